rule report:
    input:
        unpack(table_inputs("registry")),
    output:
        report_outputs("results/{dataset}"),
    params:
        code=stage_code("report"),
        experiments=lambda wildcards: " ".join(table_experiments(wildcards.dataset, "registry")),
    log:
        "logs/{dataset}/report.log",
    benchmark:
        job_benchmark("report")
    conda:
        "../envs/ccreid.yaml"
    shell:
        "ccreid report --dataset {wildcards.dataset} --prepared {input.prepared}"
        " --experiments {params.experiments} 2>&1 | tee {log}"


rule table_report:
    input:
        unpack(table_inputs(None)),
    output:
        report_outputs("results/{dataset}/{table}"),
    params:
        code=stage_code("report"),
        experiments=lambda wildcards: " ".join(table_experiments(wildcards.dataset, wildcards.table)),
    log:
        "logs/{dataset}/report-{table}.log",
    benchmark:
        job_benchmark("report-{table}")
    conda:
        "../envs/ccreid.yaml"
    wildcard_constraints:
        table="|".join(TABLES),
    shell:
        "ccreid report --dataset {wildcards.dataset} --out results/{wildcards.dataset}/{wildcards.table}"
        " --prepared {input.prepared} --experiments {params.experiments} 2>&1 | tee {log}"


rule gates:
    input:
        expand("results/{dataset}/gates/report.md", dataset=config.get("dataset", DEFAULT_DATASET)),


rule modules:
    input:
        expand("results/{dataset}/modules/report.md", dataset=config.get("dataset", DEFAULT_DATASET)),


rule lab_log:
    input:
        expand("results/{dataset}/lab_log/report.md", dataset=config.get("dataset", DEFAULT_DATASET)),
