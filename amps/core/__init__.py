"""What every stage shares (the Snakefile and ``workflow/rules/common.smk``): the config and its schema, each
step's typed settings, job resources, GPU claims, atomic I/O and progress bars."""
