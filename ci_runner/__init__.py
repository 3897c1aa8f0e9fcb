"""firecrest-ci runner: run one CI job on an HPC system through FirecREST v2."""
