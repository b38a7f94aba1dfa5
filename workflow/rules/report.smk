# Benchmarks only here: DVC never runs the report, so a benchmark file can never be missing after
# `dvc repro` built the results (a missing benchmark is a missing output: Snakemake would rerun
# the job). Every job's run time is in the report anyway (Snakemake's own metadata; docs/report.md).
rule report:
    input:
        unpack(table_inputs("registry")),
    output:
        report_outputs("results/{dataset}"),
    params:
        code=stage_code("report"),
    log:
        "logs/{dataset}/report.log",
    benchmark:
        "logs/{dataset}/report.benchmark.tsv"
    conda:
        "../envs/ccreid.yaml"
    shell:
        "ccreid report --dataset {wildcards.dataset} --prepared {input.prepared} 2>&1 | tee {log}"


rule table_report:
    input:
        unpack(table_inputs(None)),
    output:
        report_outputs("results/{dataset}/{table}"),
    params:
        code=stage_code("report"),
        experiments=lambda wildcards: " ".join(TABLES[wildcards.table]),
    log:
        "logs/{dataset}/report-{table}.log",
    benchmark:
        "logs/{dataset}/report-{table}.benchmark.tsv"
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
