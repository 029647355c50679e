# Evaluation questions. `questions.source: file` reads a user's question file; the
# V-PRISM builder (source: vprism) produces the same table from PRISM prompts.


rule questions:
    input:
        config["questions"].get("path", []),
    output:
        paths.questions_file(),
    params:
        spec=config["questions"],
    log:
        paths.log_file("questions", "questions"),
    script:
        "../scripts/questions.py"
