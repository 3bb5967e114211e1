# build_toy_models: the tiny offline stand-ins (tokenizer, Llama, Gemma-3 + processor, CLIP), saved with
# save_pretrained under results/models/. Only needed when config models.* point there (the embedded default).


rule build_toy_models:
    input:
        train="results/data/train.json",
    output:
        tokenizer=directory("results/models/tokenizer"),
        llm=directory("results/models/tiny_llama"),
        vlm=directory("results/models/tiny_gemma3"),
        clip=directory("results/models/tiny_clip"),
        metrics="results/models/metrics.json",
    params:
        sizes=config["models"]["toy"],
        image_size=config["data"]["toy"]["image_size"],
        seed=config["seed"],
    log:
        "results/logs/build_toy_models.log",
    benchmark:
        "results/benchmarks/build_toy_models.tsv"
    priority: 10  # it starts the longest chain (the <reminder> stand-in's pre-training)
    conda:
        "../envs/malmm.yaml"
    script:
        "../workflow_scripts/build_toy_models.py"


REPORT_METRICS["Tiny models"] = "results/models/metrics.json"
