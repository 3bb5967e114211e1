# Stage 'memory': a persistent multimodal memory store (mmemory.memory) scored by relevance, recency, frequency and
# saliency; its ablation on long chained sessions, and the retrieved context that feeds the <reminder> prompt.
#   results/memory/sessions/{,tune_}{turns,queries}.jsonl  chained sessions + back-referring queries (eval, tuning)
#   results/memory/<encoder>/metrics.json              the ablation (report section), recall.png, per_query.json
#   results/memory/reminder_context.json               top-k memories per val dialogue (read by the reminder stage)


if stage_active("memory"):
    MEMORY_VARIANT = config["memory"]["encoder"]["name"]
    # The encoder checkpoint is a DAG input when the workflow builds it (e.g. the toy CLIP of the emr stage).
    MEMORY_ENCODER_PATH = config["memory"]["encoder"]["path"]
    MEMORY_ENCODER_INPUT = [MEMORY_ENCODER_PATH] if str(MEMORY_ENCODER_PATH).startswith("results/") else []
    # ImageBind only runs in its own env (the store needs faiss-cpu and rank-bm25 there too); the rest in core.
    MEMORY_ENV = "../envs/imagebind.yaml" if config["memory"]["encoder"]["kind"] == "imagebind" else "../envs/core.yaml"

    rule memory_sessions:
        input:
            dialogs=f"results/data/{config['memory']['sessions']['split']}.json",
            tune_dialogs=f"results/data/{config['memory']['tune']['split']}.json",
        output:
            turns="results/memory/sessions/turns.jsonl",
            queries="results/memory/sessions/queries.jsonl",
            tune_turns="results/memory/sessions/tune_turns.jsonl",
            tune_queries="results/memory/sessions/tune_queries.jsonl",
        params:
            sessions=config["memory"]["sessions"],
            tune=config["memory"]["tune"],
            seed=config["seed"],
        log:
            "results/logs/memory_sessions.log",
        conda:
            "../envs/core.yaml"
        script:
            "../workflow_scripts/memory_sessions.py"

    rule memory_evaluate:
        input:
            turns="results/memory/sessions/turns.jsonl",
            queries="results/memory/sessions/queries.jsonl",
            tune_turns="results/memory/sessions/tune_turns.jsonl",
            tune_queries="results/memory/sessions/tune_queries.jsonl",
            encoder=MEMORY_ENCODER_INPUT,
        output:
            metrics=f"results/memory/{MEMORY_VARIANT}/metrics.json",
            per_query=f"results/memory/{MEMORY_VARIANT}/per_query.json",
            figure=report(
                f"results/memory/{MEMORY_VARIANT}/recall.png",
                caption="../resources/report/memory_recall.rst",
                category="Memory",
            ),
        params:
            memory=config["memory"],
            workdir=f"results/memory/{MEMORY_VARIANT}/eval_stores",
        threads: 2
        log:
            f"results/logs/memory_evaluate_{MEMORY_VARIANT}.log",
        benchmark:
            f"results/benchmarks/memory_evaluate_{MEMORY_VARIANT}.tsv"
        conda:
            MEMORY_ENV
        script:
            "../workflow_scripts/memory_evaluate.py"

    rule memory_reminder_context:
        input:
            val="results/data/val.json",
            encoder=MEMORY_ENCODER_INPUT,
        output:
            context="results/memory/reminder_context.json",
            metrics=f"results/memory/{MEMORY_VARIANT}/reminder_context_metrics.json",
        params:
            memory=config["memory"],
            workdir=f"results/memory/{MEMORY_VARIANT}/reminder_store",
        threads: 2
        log:
            f"results/logs/memory_reminder_context_{MEMORY_VARIANT}.log",
        benchmark:
            f"results/benchmarks/memory_reminder_context_{MEMORY_VARIANT}.tsv"
        conda:
            MEMORY_ENV
        script:
            "../workflow_scripts/memory_reminder_context.py"

    REPORT_METRICS["Retrieval memory"] = f"results/memory/{MEMORY_VARIANT}/metrics.json"
    REPORT_METRICS["Retrieval memory: context for the reminder prompt"] = (
        f"results/memory/{MEMORY_VARIANT}/reminder_context_metrics.json"
    )
    REPORT_FIGURES[f"results/memory/{MEMORY_VARIANT}/recall.png"] = (
        "Retrieval memory: recall@k and MRR per scoring method"
    )
