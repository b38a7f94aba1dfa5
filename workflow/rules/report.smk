rule report:
    input:
        unpack(table_inputs),
    output:
        report_outputs("results/{dataset}/{table}"),
    params:
        code=stage_code("report"),
        experiments=lambda wildcards: " ".join(PARAMS.table(wildcards.table)),
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


# One target per table of params.yaml: `snakemake --cores all modules --config dataset=prcc`.
for table in TABLES:

    rule:
        name:
            table
        input:
            f"results/{DATASET}/{table}/report.md",
