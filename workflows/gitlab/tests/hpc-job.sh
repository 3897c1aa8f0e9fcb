#!/bin/bash
#SBATCH --time=00:05:00
#SBATCH --nodes=1
# The batch job of the component's own test against a FirecREST system (.gitlab-ci.yml,
# component-sandbox): prints where it ran and writes a one-test JUnit report.
set -euo pipefail
echo "firecrest-job test on $(hostname) as job ${SLURM_JOB_ID:-?}: GREETING=${GREETING:-unset}"
mkdir -p reports
cat > reports/component.xml <<XML
<testsuite name="firecrest-job" tests="1">
<testcase classname="component" name="runs_on_hpc"/>
</testsuite>
XML
