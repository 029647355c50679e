"""What a chat template implies for training and generation, for any template.

* ``end_of_turn_ids``: the token(s) an assistant turn ends with. A base model's EOS is
  often not its template's end-of-turn token (Llama-3 base: EOS ``<|end_of_text|>``,
  turns end with ``<|eot_id|>``; Qwen3 base: ``<|endoftext|>`` vs ``<|im_end|>``). A model
  SFT-trained on the template ends its answers with the end-of-turn token, so both
  generation backends stop at it as well as at the EOS (paper Section 3: generation
  stops at the end token).
* ``encode_prompt``: a prompt's token ids as the tokenizer would add special tokens to
  it, but never a second BOS: a chat-formatted prompt already starts with the BOS the
  template wrote (Llama-3), a plain one gets it from the tokenizer.
* ``assistant_token_mask``: which tokens of a tokenised conversation are assistant
  output (content and the end-of-turn token), found by locating each assistant
  message in the rendered text -- no ``{% generation %}`` markers needed, so it holds
  for every template (the paper's SFT loss is -log pi(y|x): responses only).
"""

from __future__ import annotations

from typing import Any, Sequence

_PROBE = "valuedrift-end-of-turn-probe"

# Passed to every chat template we render: Llama-3.1/3.2 templates otherwise write the
# day they are rendered into the system header ("Today Date: ..."), so the same prompt
# would differ between the day of training and the day of evaluation. Their default date.
CHAT_TEMPLATE_KWARGS = {"date_string": "26 Jul 2024"}


def _special_tokens(tokenizer) -> list[str]:
    """Special and added tokens, longest first (so "<|im_end|>" wins over "<|im")."""
    names = set(tokenizer.all_special_tokens) | set(tokenizer.get_added_vocab())
    return sorted((n for n in names if n), key=len, reverse=True)


def end_of_turn_token(tokenizer) -> str | None:
    """The special token the chat template closes an assistant turn with (None: no
    template, or the template closes turns with plain text)."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _PROBE}],
                                         tokenize=False, **CHAT_TEMPLATE_KWARGS)
    after = text[text.rindex(_PROBE) + len(_PROBE):].lstrip()
    return next((t for t in _special_tokens(tokenizer) if after.startswith(t)), None)


def end_of_turn_ids(tokenizer, eos_ids: Sequence[int] = ()) -> list[int]:
    """Token ids that end an answer: the model's EOS ids, the tokenizer's EOS and the
    template's end-of-turn token."""
    ids = set(int(i) for i in eos_ids)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    turn_end = end_of_turn_token(tokenizer)
    if turn_end is not None:
        ids.add(int(tokenizer.convert_tokens_to_ids(turn_end)))
    return sorted(ids)


def encode_prompt(tokenizer, text: str) -> list[int]:
    """Token ids of a prompt with the tokenizer's special tokens, without a doubled BOS."""
    ids = tokenizer(text, add_special_tokens=True).input_ids
    bos = tokenizer.bos_token_id
    if bos is not None and len(ids) >= 2 and ids[0] == bos and ids[1] == bos:
        ids = ids[1:]  # the template wrote the BOS; the tokenizer added another
    return ids


_UNSET = object()


def assistant_token_mask(tokenizer, messages: Sequence[dict[str, str]], *, where: str = "",
                         turn_end: str | None | object = _UNSET) -> dict[str, Any]:
    """``input_ids`` of the chat-formatted conversation (as ``apply_chat_template(...,
    tokenize=True)`` gives them) and ``assistant_masks``: 1 for the tokens of every
    assistant reply and the end-of-turn token closing it, 0 for everything else (system
    and user turns, role headers, the template's own text).

    Each message's content is located in the rendered text in order (templates may
    trim it; Qwen3 adds an empty think block to the last reply, which stays unmasked).
    """
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, **CHAT_TEMPLATE_KWARGS)
    if turn_end is _UNSET:  # callers masking many conversations pass it, found once
        turn_end = end_of_turn_token(tokenizer)
    spans, cursor = [], 0
    for j, message in enumerate(messages):
        content = message["content"].strip()
        if not content:
            continue
        start = text.find(content, cursor)
        if start < 0:
            raise ValueError(f"{where or 'conversation'}: message {j} ({message['role']}) is not found in the "
                             f"chat-formatted text; the chat template rewrites message content")
        end = start + len(content)
        if message["role"] == "assistant":
            rest = text[end:]
            if turn_end is not None and rest.lstrip().startswith(turn_end):
                end += len(rest) - len(rest.lstrip()) + len(turn_end)
            spans.append((start, end))
        cursor = end
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = [int(any(a < e and b > s for s, e in spans)) for a, b in enc["offset_mapping"]]
    return {"input_ids": list(enc["input_ids"]), "assistant_masks": mask}
