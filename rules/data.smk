# Data: the toy VisDial renderer and prepare_data (validation + normalization, real or toy through one reader).
# Three splits, disjoint by content: train fits, val chooses settings, test is what the report's tables show.


rule toy_visdial:
    output:
        train_json="results/toy_visdial/visdial_1.0_train.json",
        val_json="results/toy_visdial/visdial_1.0_val.json",
        test_json="results/toy_visdial/visdial_1.0_test.json",
        val_dense="results/toy_visdial/visdial_1.0_val_dense_annotations.json",
        test_dense="results/toy_visdial/visdial_1.0_test_dense_annotations.json",
        train_images=directory("results/toy_visdial/images/train"),
        val_images=directory("results/toy_visdial/images/val"),
        test_images=directory("results/toy_visdial/images/test"),
    params:
        toy=config["data"]["toy"],
        n_options=config["data"]["n_options"],
        seed=config["seed"],
    log:
        "results/logs/toy_visdial.log",
    benchmark:
        "results/benchmarks/toy_visdial.tsv"
    conda:
        "../envs/core.yaml"
    script:
        "../workflow_scripts/toy_visdial.py"


rule prepare_data:
    input:
        **visdial_source(),
    output:
        train="results/data/train.json",
        val="results/data/val.json",
        test="results/data/test.json",
        val_dense="results/data/val_dense.json",
        test_dense="results/data/test_dense.json",
        report="results/data/data_report.json",
        metrics="results/data/metrics.json",
    params:
        data=settings("data", "source", "strict", "n_options", "max_dialogs", "check_images"),
        visdial=config["data"]["visdial"] if config["data"]["source"] == "visdial" else {},
        seed=config["seed"],
    log:
        "results/logs/prepare_data.log",
    benchmark:
        "results/benchmarks/prepare_data.tsv"
    conda:
        "../envs/core.yaml"
    script:
        "../workflow_scripts/prepare_data.py"


REPORT_METRICS["Data"] = "results/data/metrics.json"
