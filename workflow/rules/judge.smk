# Stance distribution of every response (the paper's judge prompt, Figure 8).


rule judge:
    input:
        generations=paths.generations_file("{model}"),
        questions=paths.questions_file(),
        judge_model=judge_model_dir() if config["judge"]["backend"] == "local" else [],
    output:
        stances=paths.stances_file("{model}"),
        accounting=paths.judge_accounting_file("{model}"),
    params:
        judge=config["judge"],
    log:
        paths.log_file("judge", "{model}"),
    threads: workflow.cores
    script:
        "../scripts/judge.py"
