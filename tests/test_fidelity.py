"""The paper's study, exactly: each test checks one setting against the paper's
text or numbers (docs/fidelity.md lists them all)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from conftest import REPO
from valuedrift.options import option_letter, options_from_top_logprobs, read_options
from valuedrift.study import runs_of

# -- API judge option reading (paper Figure 8 shows "(A) support") ---------------------------


@pytest.mark.parametrize("token", ["A", " A", "(A", "A)", "(A)", "\nA", "\n\nA", " (A", "**A**", "A.", "ĠA", "ĊA", "▁A"])
def test_every_token_variant_of_a_letter_maps_to_it(token):
    assert option_letter(token) == "A"
    assert option_letter(token.replace("A", "C")) == "C"


def test_a_first_token_without_a_letter_is_skipped_to_the_letter():
    # the model answers "(" then "B": the options are read at position 1, not from the
    # alternatives of "(" at position 0 (where "B" is a long shot)
    positions = [["(", -0.1, [["(", -0.1], ["B", -4.0], ["A", -5.0]]],
                 ["B", -0.3, [["B", -0.3], ["A", -2.0], ["C", -3.0]]],
                 [")", -0.01, [[")", -0.01]]]]
    reading = read_options(positions)
    assert reading.position == 1 and reading.rule == "emitted" and reading.missing == ()
    assert reading.logprobs == options_from_top_logprobs(positions[1][2])[0]
    assert reading.mass == pytest.approx(math.exp(-0.3) + math.exp(-2.0) + math.exp(-3.0))
    # no letter emitted within max_tokens: the first position listing one (with its low mass)
    words = [["The", -0.3, [["The", -0.3], ["A", -3.0]]], [" most", -0.1, [[" most", -0.1]]]]
    fallback = read_options(words)
    assert fallback.position == 0 and fallback.rule == "listed"
    assert fallback.mass == pytest.approx(3 * math.exp(-3.0))  # B, C unlisted: at the floor (upper bound)
    assert read_options([["The", -0.3, [["The", -0.3]]]]).logprobs is None


def test_gpt4o_tokenization_of_answer_variants():
    """GPT-4o's own vocabulary (o200k_base; tiktoken downloads it at first use, the
    quicktok package ships it): every token that carries the letter maps to it, and
    answers that start with "\\n" or " (" put the letter at the second position."""
    quicktok = pytest.importorskip("quicktok")
    enc = quicktok.get_encoding("o200k_base")
    first_letter_position = {}
    for answer in ["A", " A", "(A", "A)", "(A)", "\nA", " (A)", "\n\n(A)", "**A**", "A."]:
        tokens = [enc.decode([i]) for i in enc.encode(answer)]
        position = next(i for i, t in enumerate(tokens) if option_letter(t))
        assert option_letter(tokens[position]) == "A", (answer, tokens)
        assert all(option_letter(t) is None for t in tokens[:position]), (answer, tokens)
        first_letter_position[answer] = position
        positions = [[t, -0.1, [[t, -0.1], ["B", -3.0]]] for t in tokens]
        assert read_options(positions).position == position
    assert first_letter_position["(A"] == 0 and first_letter_position["\nA"] == 1 and first_letter_position[" (A)"] == 1
    # across the whole vocabulary: the tokens read as "A" include the API's usual spellings
    spelled_a = {enc.decode([i]) for i in range(enc.n_vocab) if not enc.is_special_token(i)
                 and _decodes(enc, i) and option_letter(enc.decode([i])) == "A"}
    assert {"A", " A", "(A"} <= spelled_a
    assert not any(c.isalpha() and c != "A" for t in spelled_a for c in t)


def _decodes(enc, i) -> bool:
    try:
        enc.decode_single_token_bytes(i).decode("utf-8")
        return True
    except (UnicodeDecodeError, ValueError, RuntimeError, KeyError):
        return False


@pytest.mark.slow
def test_api_judge_reads_the_letter_after_a_parenthesis(llama_server, tmp_path, monkeypatch):
    """A real OpenAI-compatible server (llama.cpp, SmolLM2): asked to output "(B)" again,
    the model answers "(", "A", ")". The judge asks for 3 tokens and reads the options at
    position 1, where the letter is; the position and the option mass are accounted."""
    from llm_server import raw_chat
    from valuedrift.openai_judge import OpenAIJudge

    monkeypatch.setenv("VALUEDRIFT_TEST_API_KEY", llama_server.api_key)
    prompt = "Output: (B)\nNow output it again."
    judge = OpenAIJudge(model="smollm2", base_url=llama_server.base_url, api_key_env="VALUEDRIFT_TEST_API_KEY",
                        concurrency=1, cache_dir=str(tmp_path / "cache"), progress=False, max_tokens=3)
    [got] = judge.option_logprobs([prompt])
    raw = raw_chat(llama_server.base_url, {"model": "smollm2", "messages": [{"role": "user", "content": prompt}],
                                           "max_tokens": 3, "temperature": 0, "logprobs": True, "top_logprobs": 20},
                   api_key=llama_server.api_key)
    content = raw["choices"][0]["logprobs"]["content"]
    assert content[0]["token"] == "(" and option_letter(content[1]["token"]) is not None
    by_hand = options_from_top_logprobs([[t["token"], t["logprob"]] for t in content[1]["top_logprobs"]])[0]
    assert got == pytest.approx(by_hand, abs=2e-3)
    [reading] = judge.readings
    assert reading.position == 1 and reading.rule == "emitted"
    first_position = options_from_top_logprobs([[t["token"], t["logprob"]] for t in content[0]["top_logprobs"]])[0]
    first_mass = sum(math.exp(x) for x in first_position) if first_position else 0.0
    print(f"option mass at position 1: {reading.mass:.3f}; at position 0: {first_mass:.3f}")
    assert reading.mass > 0.5 > first_mass  # measured 0.89 vs 0.08: position 0 reads a long shot
    acct = judge.accounting()
    assert acct["option_position"] == {"1": 1} and acct["option_rule"] == {"emitted": 1}
    assert acct["max_tokens"] == 3 and acct["completion_tokens"] == 3


# -- chat templates: Llama-3 and Qwen3 shapes (real templates from trl), the demo's ChatML ----

TRL_TEMPLATES = Path(__import__("trl").__file__).parent / "chat_templates"
SHAPES = {
    # the paper's base models: EOS is not the end-of-turn token, Llama-3 adds a BOS
    "llama3": dict(specials=["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                             "<|eot_id|>"], bos="<|begin_of_text|>", eos="<|end_of_text|>", turn_end="<|eot_id|>",
                   template="llama3_2.jinja"),
    "qwen3": dict(specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"], bos=None,
                  eos="<|endoftext|>", turn_end="<|im_end|>", template="qwen3.jinja"),
}


@pytest.fixture(scope="module")
def shaped_tokenizers(tmp_path_factory):
    """Hand-made byte-level BPE tokenizers with the special tokens, BOS/EOS and real chat
    template of each shape (Llama-3 also with its BOS-adding post-processor)."""
    from conftest import demo_texts
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    out = {}
    for name, shape in SHAPES.items():
        bpe = Tokenizer(models.BPE(unk_token=None))
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        bpe.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<pad>", *shape["specials"]],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        bpe.train_from_iterator(demo_texts(), trainer=trainer)
        if shape["bos"]:
            bos_id = bpe.token_to_id(shape["bos"])
            bpe.post_processor = processors.TemplateProcessing(single=f"{shape['bos']} $A",
                                                               special_tokens=[(shape["bos"], bos_id)])
        tok = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", bos_token=shape["bos"],
                                      eos_token=shape["eos"], additional_special_tokens=shape["specials"],
                                      chat_template=(TRL_TEMPLATES / shape["template"]).read_text())
        path = tmp_path_factory.mktemp(name)
        tok.save_pretrained(path)
        out[name] = AutoTokenizer.from_pretrained(path)
    return out


def _tokenizer(name, shaped_tokenizers, tiny_model):
    from transformers import AutoTokenizer

    if name == "chatml":  # the demo's / the tiny model's ChatML template
        return AutoTokenizer.from_pretrained(tiny_model), "<|im_end|>"
    return shaped_tokenizers[name], SHAPES[name]["turn_end"]


CONVERSATION = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Should abortion be legal?"},
                {"role": "assistant", "content": "Opinions differ widely on that."},
                {"role": "user", "content": "And immigration?"},
                {"role": "assistant", "content": "It is debated too."}]


@pytest.mark.parametrize("shape", ["chatml", "llama3", "qwen3"])
def test_assistant_mask_covers_replies_and_their_end_of_turn_only(shape, shaped_tokenizers, tiny_model):
    from valuedrift.chat import CHAT_TEMPLATE_KWARGS, assistant_token_mask, end_of_turn_token

    tok, turn_end = _tokenizer(shape, shaped_tokenizers, tiny_model)
    assert end_of_turn_token(tok) == turn_end
    enc = assistant_token_mask(tok, CONVERSATION)
    # the same ids trl's own chat-template tokenisation gives
    assert enc["input_ids"] == list(tok.apply_chat_template(CONVERSATION, tokenize=True, return_dict=True,
                                                            **CHAT_TEMPLATE_KWARGS)["input_ids"])
    kept = [i for i, m in zip(enc["input_ids"], enc["assistant_masks"]) if m]
    text = tok.decode(kept)
    assert text == "".join(m["content"] + turn_end for m in CONVERSATION if m["role"] == "assistant")
    assert "abortion" not in text and "brief" not in text


def test_sft_labels_mask_user_turns_in_trls_collator(tiny_model, tmp_path):
    """The real trl SFTTrainer and its collator on the tiny model: user-turn tokens carry
    label -100 (no loss), assistant tokens and their end-of-turn token carry their id."""
    from transformers import AutoTokenizer

    from valuedrift.training import trainers
    from valuedrift.training.settings import SFTSettings

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    rows = [{"messages": CONVERSATION[1:]}, {"messages": [{"role": "user", "content": "Is work good?"},
                                                          {"role": "assistant", "content": "Work is fine."}]}]
    s = SFTSettings(global_batch_size=2, per_device_batch_size=2, max_length=256, schedule_steps=1, bf16=False)
    common = trainers._common(s, output_dir=str(tmp_path / "sft"), horizon=1, world_size=1)
    trainer = trainers.build_sft(s, common, str(tiny_model), tokenizer, rows, {})
    batch = next(iter(trainer.get_train_dataloader()))
    texts = []
    for ids, labels, mask in zip(batch["input_ids"].tolist(), batch["labels"].tolist(),
                                 batch["attention_mask"].tolist()):
        real = [(i, lab) for i, lab, m in zip(ids, labels, mask) if m]
        assert all(lab in (-100, i) for i, lab in real)
        texts.append((tokenizer.decode([i for i, lab in real if lab != -100]),
                      tokenizer.decode([i for i, lab in real if lab == -100])))
    want = {"Opinions differ widely on that.<|im_end|>It is debated too.<|im_end|>", "Work is fine.<|im_end|>"}
    assert {trained for trained, _ in texts} == want
    for _, untrained in texts:
        assert "user" in untrained and ("abortion" in untrained or "work good" in untrained)
    # the old behaviour, every token trained, is still one setting away
    everything = trainers.build_sft(s.with_overrides({"assistant_only_loss": False}), common, str(tiny_model),
                                    tokenizer, rows, {})
    full = next(iter(everything.get_train_dataloader()))
    assert (full["labels"][full["attention_mask"] == 1] != -100).all()


# -- answers stop at the end of the turn, prompts get one BOS ----------------------------------

@pytest.mark.parametrize("shape", ["chatml", "llama3", "qwen3"])
def test_end_of_turn_stops_both_backends_and_chat_prompts_get_one_bos(shape, shaped_tokenizers, tiny_model):
    from valuedrift.chat import encode_prompt, end_of_turn_ids
    from valuedrift.generation import SamplingSettings, format_prompt
    from types import SimpleNamespace

    from valuedrift.vllm_backend import generation_prompts, response_token_count, sampling_kwargs, stop_token_ids

    tok, turn_end = _tokenizer(shape, shaped_tokenizers, tiny_model)
    turn_end_id = tok.convert_tokens_to_ids(turn_end)
    base_eos = [tok.eos_token_id]  # what a base model's generation_config knows
    stop = end_of_turn_ids(tok, base_eos)
    assert turn_end_id in stop and tok.eos_token_id in stop
    chat_prompt = format_prompt(tok, "Should borders be open?", "chat", "{question}\nResponse:")
    plain_prompt = format_prompt(tok, "Should borders be open?", "plain", "{question}\nResponse:")
    chat_ids, plain_ids = encode_prompt(tok, chat_prompt), encode_prompt(tok, plain_prompt)
    if tok.bos_token_id is not None and shape == "llama3":
        assert tok(chat_prompt).input_ids[:2] == [tok.bos_token_id] * 2  # the hazard: a second BOS
        assert chat_ids[0] == tok.bos_token_id and chat_ids[1] != tok.bos_token_id
        assert plain_ids[0] == tok.bos_token_id  # a base-model prompt gets its BOS
    assert tok.decode(chat_ids, skip_special_tokens=False).count(tok.bos_token or "\0") <= 1
    # vLLM: the same token ids, stopping at the end of turn; its stop token not counted
    sampling = SamplingSettings(samples=2, max_new_tokens=16)
    prompts = generation_prompts(tok, [chat_prompt, plain_prompt])
    params = sampling_kwargs(sampling, chat_prompt, stop_token_ids(tok, SimpleNamespace(eos_token_id=base_eos)))
    assert [p["prompt_token_ids"] for p in prompts] == [chat_ids, plain_ids]
    assert turn_end_id in params["stop_token_ids"] and params["n"] == 2 and params["max_tokens"] == 16
    assert response_token_count([5, 6, turn_end_id], "stop", turn_end_id) == 2
    assert response_token_count([5, 6, 7], "length", None) == 3


@pytest.mark.parametrize("shape", ["llama3", "qwen3"])
def test_transformers_backend_stops_at_the_end_of_turn_of_a_base_models_template(shape, shaped_tokenizers, tmp_path):
    """A model whose generation config knows only the base EOS (as the paper's base
    models and their SFT checkpoints), made to emit the end-of-turn token first: the
    answer ends there (0 tokens) instead of running to max_new_tokens."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from valuedrift.generation import SamplingSettings, TransformersGenerator, format_prompt

    tok = shaped_tokenizers[shape]
    turn_end_id = tok.convert_tokens_to_ids(SHAPES[shape]["turn_end"])
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # every position's hidden state is the same vector; only the end-of-turn row reads it
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.fill_(1.0)
        model.lm_head.weight.zero_()
        model.lm_head.weight[turn_end_id] = 1.0
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    gen = TransformersGenerator(tmp_path / "m", dtype="float32", batch_size=2)
    assert turn_end_id in gen.eos_ids and tok.eos_token_id in gen.eos_ids
    prompts = [format_prompt(tok, q, "chat", "") for q in ("Is work good?", "Should borders be open?")]
    greedy = SamplingSettings(samples=1, temperature=0, max_new_tokens=8)
    assert [n for [(_, n)] in gen.generate(prompts, greedy)] == [0, 0]
    gen.eos_ids = [tok.eos_token_id]  # what the generation config alone would stop at
    assert [n for [(_, n)] in gen.generate(prompts, greedy)] == [8, 8]


# -- response lengths (Appendix B.3) ----------------------------------------------------------

def test_response_lengths_are_named_keys_with_the_papers_values():
    from valuedrift.config import schema
    from valuedrift.training.settings import DPOSettings, PPOSettings, SimPOSettings

    assert DPOSettings().max_completion_length == SimPOSettings().max_completion_length == 1024
    assert DPOSettings().max_length == SimPOSettings().max_length == 2048
    assert (PPOSettings().max_length, PPOSettings().response_length) == (2048, 1024)
    training = schema()["properties"]["training"]["properties"]
    assert "max_completion_length" in training["dpo"]["properties"] and "max_completion_length" in training["simpo"]["properties"]
    assert "response_length" in training["ppo"]["properties"] and "assistant_only_loss" in training["sft"]["properties"]


LONG_PAIRS = [{"prompt": [{"role": "user", "content": f"Is {i} a good number?"}],
               "chosen": "Yes, it is a fine number. " * (3 + i), "rejected": f"No. {i} is bad. " * (2 + i)}
              for i in range(4)]


@pytest.mark.parametrize("algorithm", ["dpo", "simpo"])
def test_replies_keep_their_first_max_completion_length_tokens(algorithm, tiny_model, tmp_path):
    from transformers import AutoTokenizer

    from valuedrift.training import trainers
    from valuedrift.training.settings import DPOSettings, SimPOSettings

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    cls = DPOSettings if algorithm == "dpo" else SimPOSettings
    build = trainers.build_dpo if algorithm == "dpo" else trainers.build_simpo

    def replies(limit):
        s = cls(global_batch_size=2, per_device_batch_size=2, max_length=512, schedule_steps=1, bf16=False,
                max_completion_length=limit)
        common = trainers._common(s, output_dir=str(tmp_path / f"{algorithm}-{limit}"), horizon=1, world_size=1)
        ds = build(s, common, str(tiny_model), tokenizer, LONG_PAIRS, {}).train_dataset
        if algorithm == "dpo":
            return [(r["chosen_ids"], r["rejected_ids"]) for r in ds]
        return [(r["chosen_input_ids"][len(r["prompt_input_ids"]):], r["rejected_input_ids"][len(r["prompt_input_ids"]):])
                for r in ds]

    full, cut = replies(None), replies(6)
    assert max(len(c) for c, _ in full) > 6  # some replies were longer
    for (c_full, r_full), (c_cut, r_cut) in zip(full, cut):
        assert c_cut == c_full[:6] and r_cut == r_full[:6]


def test_ppo_prompt_and_response_fit_max_length(tiny_model, tmp_path):
    pytest.importorskip("trl.experimental.ppo")
    from valuedrift.training.settings import PPOSettings
    from valuedrift.training.segment import train_segment

    with pytest.raises(ValueError, match="must exceed training.ppo.response_length"):
        train_segment(algorithm="ppo", settings=PPOSettings(max_length=8, response_length=8, global_batch_size=4,
                                                             per_device_batch_size=4, bf16=False, schedule_steps=1),
                      start_model=tiny_model, previous=None, output=tmp_path / "checkpoint-1", step=1,
                      rows=LONG_PAIRS, reward_model=tiny_model)
    from transformers import AutoTokenizer

    from valuedrift.training import trainers

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    tokenizer.padding_side = "left"
    s = PPOSettings(max_length=12, response_length=4, global_batch_size=4, per_device_batch_size=4, bf16=False,
                    schedule_steps=1, num_ppo_epochs=1)
    common = trainers._common(s, output_dir=str(tmp_path / "ppo"), horizon=1, world_size=1)
    trainer = trainers.build_ppo(s, common, str(tiny_model), tokenizer, LONG_PAIRS,
                                 {"reward_model": str(tiny_model), "previous": None, "step": 1})
    lengths = [len(r["input_ids"]) for r in trainer.train_dataset]
    assert max(lengths) == 12 - 4  # prompts keep their last 8 tokens: prompt + response <= 12
    assert trainer.args.response_length == 4


def test_ppo_rollouts_end_at_the_end_of_turn_token(shaped_tokenizers, tmp_path):
    """Llama-3 shape: EOS <|end_of_text|>, turns end with <|eot_id|>. trl's PPO stops
    rollouts (and applies the EOS trick) at the tokenizer's EOS, so it must be <|eot_id|>."""
    pytest.importorskip("trl.experimental.ppo")
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    from valuedrift.training import trainers
    from valuedrift.training.settings import PPOSettings

    from transformers import AutoTokenizer

    shaped_tokenizers["llama3"].save_pretrained(tmp_path / "policy")
    tok = AutoTokenizer.from_pretrained(tmp_path / "policy", padding_side="left")  # PPO's builder changes its EOS
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "policy")
    config.num_labels = 1
    LlamaForSequenceClassification(config).save_pretrained(tmp_path / "reward")
    s = PPOSettings(max_length=64, response_length=8, global_batch_size=4, per_device_batch_size=4, bf16=False,
                    schedule_steps=1, num_ppo_epochs=1)
    common = trainers._common(s, output_dir=str(tmp_path / "ppo"), horizon=1, world_size=1)
    trainer = trainers.build_ppo(s, common, str(tmp_path / "policy"), tok, LONG_PAIRS,
                                 {"reward_model": str(tmp_path / "reward"), "previous": None, "step": 1})
    eot = tok.convert_tokens_to_ids("<|eot_id|>")
    assert trainer.stop_token_id == eot and trainer.processing_class.eos_token_id == eot


# -- WildChat release and row counts (Appendix B.1) -------------------------------------------

def test_paper_split_counts_are_floor_of_ninety_percent():
    from valuedrift.datasets import PAPER_TRAIN_ROWS, WILDCHAT_RELEASES, train_split

    wc = WILDCHAT_RELEASES["allenai/WildChat"]
    assert wc["train"] + wc["validation"] == wc["english"] == 284_168
    assert len(train_split(list(range(284_168)), seed=0)) == 255_751 == PAPER_TRAIN_ROWS[("wildchat", "allenai/WildChat")]
    assert len(train_split(list(range(52_002)), seed=0)) == 46_801  # Alpaca: 46,801 + 5,201


def _write_wildchat_like(folder: Path, n: int = 20) -> None:
    """A local copy in the hub layout (data/train-*.parquet) with WildChat's columns."""
    import polars as pl

    rows = []
    for i in range(n):
        lang = "English" if i % 4 else "Spanish"
        reply = "" if i == 5 else f"Here is answer {i}."
        rows.append({"conversation_hash": f"h{i}", "model": "gpt-3.5-turbo", "turn": 1, "language": lang,
                     "conversation": [{"content": f"Question {i}?", "role": "user", "language": lang, "toxic": False},
                                      {"content": reply, "role": "assistant", "language": lang, "toxic": False}],
                     "toxic": False, "redacted": False})
    (folder / "data").mkdir(parents=True)
    pl.DataFrame(rows).write_parquet(folder / "data" / "train-00000-of-00001.parquet")


@pytest.mark.parametrize("name, expected", [("allenai/WildChat", 255_751), ("allenai/WildChat-1M", None)])
def test_wildchat_releases_by_name_and_the_stored_row_count(name, expected, tmp_path, caplog):
    from valuedrift.datasets import prepare, prepared_info

    _write_wildchat_like(tmp_path / "hub")
    out = tmp_path / "prepared" / "wildchat.parquet"
    spec = {"kind": "sft", "source": "wildchat", "name": name, "path": str(tmp_path / "hub"), "seed": 0}
    with caplog.at_level("INFO", logger="valuedrift.datasets"):
        info = prepare(spec, out)
    # 20 rows, 15 English, 1 with an empty reply skipped, floor(0.9 x 14) = 12 train rows
    assert (info["hub_rows"], info["english_rows"], info["skipped"], info["rows"]) == (20, 15, 1, 12)
    assert prepared_info(out) == info and info["expected_rows"] == expected
    assert info["matches_paper"] is (None if expected is None else False)
    assert "prepared 12 sft rows" in caplog.text
    if expected:
        assert "the paper's allenai/WildChat has 255751" in caplog.text
    import polars as pl

    assert len(pl.read_parquet(out)) == 12


def test_paper_config_uses_the_papers_wildchat_release():
    import yaml

    cfg = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    assert cfg["datasets"]["wildchat"]["name"] == "allenai/WildChat"


# -- checkpoint grid and drift times (Tables 9-12) --------------------------------------------

# the paper's text beside the checkout (../shared), or beside the worktree folder it sits in
PAPER = next((p / "shared" / "paper" / "value-drifts.txt" for p in (REPO.parent, REPO.parent.parent)
              if (p / "shared" / "paper" / "value-drifts.txt").exists()), REPO.parent / "shared" / "paper" / "value-drifts.txt")
SFT_TABLES = {9: "llama3-3b", 10: "llama3-8b", 11: "qwen3-4b", 12: "qwen3-8b"}
# The distinct drift times of Tables 9-12 (read from the paper when its text is at hand,
# which the test checks against these)
PAPER_SFT_DRIFT_TIMES = {"wildchat": {0.09, 0.18, 0.27, 0.45, 0.91, 1.0}, "alpaca": {0.09, 0.18, 0.27, 0.46}}


def paper_sft_drift_times() -> dict[tuple[str, str], set[float]]:
    """(base model, SFT dataset) -> the drift-time values of its table (9-12)."""
    lines = PAPER.read_text().splitlines()
    out = {}
    for number, base in SFT_TABLES.items():
        start = next(i for i, line in enumerate(lines) if line.startswith(f"Table {number}:"))
        end = next(i for i, line in enumerate(lines) if line.startswith(f"Table {number + 1}:"))
        block = lines[start:end]
        first = next(i for i, line in enumerate(block) if line.startswith("drift time"))
        rows = [line.split()[-6:] for line in block[first:first + 11]]
        assert all(len(r) == 6 for r in rows)
        out[(base, "wildchat")] = {float(v) for r in rows for v in r[:3]}
        out[(base, "alpaca")] = {float(v) for r in rows for v in r[3:]}
    return out


def attainable_drift_times(run) -> set[float]:
    """Drift time = (first step within the extremum's CI) / final step (valuedrift.metrics):
    one value per checkpoint step of the run."""
    return {round(step / run.max_steps, 2) for step in run.steps}


def test_paper_config_grid_gives_every_sft_drift_time_of_tables_9_to_12():
    from valuedrift import config as vd_config

    cfg = vd_config.load(REPO / "config/paper.yaml", workdir=REPO)
    runs = {(r.base, r.sft): r for r in runs_of(cfg) if r.is_sft}
    if PAPER.exists():
        table_times = paper_sft_drift_times()
        for (base, sft), times in table_times.items():
            assert times <= PAPER_SFT_DRIFT_TIMES[sft], (base, sft, times)
        assert set().union(*(t for (_, s), t in table_times.items() if s == "wildchat")) == PAPER_SFT_DRIFT_TIMES["wildchat"]
    else:
        table_times = {(base, sft): t for base in SFT_TABLES.values() for sft, t in PAPER_SFT_DRIFT_TIMES.items()}
    for (base, sft), times in table_times.items():
        lattice = attainable_drift_times(runs[(base, sft)])
        assert times <= lattice, (base, sft, sorted(times - lattice), sorted(lattice))
    # the paper's lattices: 11 WildChat checkpoints (k/11), Alpaca 100-step checkpoints of 1,098
    assert attainable_drift_times(runs[("llama3-3b", "wildchat")]) == {round(k / 11, 2) for k in range(1, 12)}
    assert runs[("llama3-3b", "alpaca")].max_steps == 1098 and 0.46 in attainable_drift_times(runs[("llama3-3b", "alpaca")])
    # the WildChat runs still train under the 3-epoch schedule of 5,997 steps
    from valuedrift.training.registry import settings_for

    assert settings_for("sft", cfg["training"]).horizon(255_751) == 5997


def test_table_1_drift_times_lie_on_the_ultrafeedback_grid():
    """Table 1 (PO on UltraFeedback, 5,712 steps, a checkpoint every 100): all but one
    value (0.20, on no 100-step lattice of 5,712; docs/fidelity.md) are attainable."""
    from valuedrift import config as vd_config

    cfg = vd_config.load(REPO / "config/paper.yaml", workdir=REPO)
    [run] = [r for r in runs_of(cfg) if (r.base, r.sft, r.algorithm, r.preference)
             == ("llama3-3b", "wildchat", "dpo", "ultrafeedback")]
    table_1 = {0.21, 0.42, 0.28, 0.20, 0.14, 0.84}
    lattice = attainable_drift_times(run)
    assert table_1 - lattice == {0.20}


def test_paper_config_selects_vprism_clusters_by_hand_per_table_3():
    from valuedrift import config as vd_config
    from valuedrift.topics import CATEGORY_TOPICS

    cfg = vd_config.load(REPO / "config/paper.yaml", workdir=REPO)
    select = cfg["questions"]["vprism"]["select"]
    assert select["method"] == "manual" and list(select["clusters"]) == list(CATEGORY_TOPICS)
    assert cfg["questions"]["vprism"]["sample"]["per_category"] == 50  # 550 questions


def _paper_table_block(number: int, metric: str, width: int) -> list[list[float]]:
    lines = PAPER.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"Table {number}:"))
    block = lines[start:start + 40]
    first = next(i for i, line in enumerate(block) if line.startswith(metric))
    return [[float(v) for v in line.split()[-width:]] for line in block[first:first + 11]]


def test_synthetic_po_drift_times_fit_an_888_step_grid():
    """Tables 13-16 (PO on the 9,453-prompt synthetic set, not in config/paper.yaml): their
    drift times are k x 100 / 888 (9,453 / 32 x 3 epochs = 888 steps, a checkpoint every
    100), the grid a config for them needs."""
    from valuedrift.study import Run

    if not PAPER.exists():
        pytest.skip(f"{PAPER} not available")
    run = Run(base="llama3-3b", sft="wildchat", every=100, max_steps=3 * math.ceil(9453 / 32), algorithm="dpo",
              preference="synthetic", sft_max_steps=5500)
    assert run.max_steps == 888
    lattice = attainable_drift_times(run)
    for number in (13, 14, 15, 16):
        times = {v for row in _paper_table_block(number, "drift time", 18) for v in row}
        assert times <= lattice, (number, sorted(times - lattice))


def test_the_papers_internal_inconsistencies_listed_in_fidelity_md():
    if not PAPER.exists():
        pytest.skip(f"{PAPER} not available")
    assert _paper_table_block(9, "drift time", 6) == _paper_table_block(10, "drift time", 6)
    assert _paper_table_block(14, "drift magnitude", 18) == _paper_table_block(16, "drift magnitude", 18)
    immigration = 7  # row of "Immigration Policies" in the 11-category blocks
    magnitude, time = _paper_table_block(15, "drift magnitude", 18), _paper_table_block(15, "drift time", 18)
    # columns: oppose-aligned PPO/DPO/SimPO x (support, neutral, oppose), then support-aligned
    assert magnitude[immigration][3:6] == [-0.06, -0.40, 0.46]  # the text's "M_support = 0.46" is M_oppose
    assert time[immigration][15] == 1.0 and time[immigration][9] == 0.34  # text's SimPO eta 0.34 is PPO's
    text = (REPO / "docs" / "fidelity.md").read_text()
    for claim in ("Tables 9 and 10", "Tables 14 and 16", "0.46", "0.34", "0.20"):
        assert claim in text


def test_llama3_2_template_gets_one_date_in_training_and_generation(shaped_tokenizers, tmp_path):
    """Llama-3.2's template writes the day it is rendered into the system header; SFT, DPO
    and generation all render it with the same fixed date, so train and eval prompts match."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from valuedrift.chat import assistant_token_mask
    from valuedrift.generation import format_prompt
    from valuedrift.training import trainers
    from valuedrift.training.settings import DPOSettings

    tok = shaped_tokenizers["llama3"]
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=2)).save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    date = "Today Date: 26 Jul 2024"
    assert date in format_prompt(tok, "Is work good?", "chat", "")
    assert date in tok.decode(assistant_token_mask(tok, CONVERSATION)["input_ids"])
    s = DPOSettings(global_batch_size=2, per_device_batch_size=2, max_length=512, schedule_steps=1, bf16=False)
    common = trainers._common(s, output_dir=str(tmp_path / "dpo"), horizon=1, world_size=1)
    dpo = trainers.build_dpo(s, common, str(tmp_path / "m"), tok, LONG_PAIRS[:2], {})
    assert all(date in tok.decode(r["prompt_ids"]) for r in dpo.train_dataset)
