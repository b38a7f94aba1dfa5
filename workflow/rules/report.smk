rule report:
    input:
        unpack(table_inputs),
    output:
        report_outputs(TABLE),
    params:
        code=stage_code("report"),
        experiments=lambda wildcards: " ".join(PARAMS.table(wildcards.table)),
        out=lambda wildcards: paths.table_dir(wildcards.dataset, wildcards.table),
    log:
        job_log("report-{table}"),
    benchmark:
        job_benchmark("report-{table}")
    conda:
        "../envs/ccreid.yaml"
    wildcard_constraints:
        table="|".join(TABLES),
    shell:
        "ccreid report --dataset {wildcards.dataset} --out {params.out}"
        " --prepared {input.prepared} --experiments {params.experiments} 2>&1 | tee {log}"


# One target per table of params.yaml: `snakemake --cores all modules --config dataset=prcc`.
for table in TABLES:

    rule:
        name:
            table
        input:
            str(paths.table_dir(DATASET, table) / paths.REPORT_MD),
