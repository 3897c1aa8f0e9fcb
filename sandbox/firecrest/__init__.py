"""A local FirecREST v2-compatible target: an honest stand-in for an HPC centre.

It follows the real API's paths, fields, states and errors (checked against
responses recorded from a real FirecREST v2 server on real Slurm, and against
that server's source) and runs batch jobs for real as local processes
following Slurm's model, with an OIDC client-credentials token endpoint. It is
not a scheduler: one node, no queueing policy, accounting, S3 transfers or
POSIX users; everything runs as the user who started it.

Layout: `config` (settings and knobs), `auth` (tokens), `sbatch` (script
options), `jobs` (the job manager), `files` (file operations), `faults`
(seeded fault injection), `status`/`compute`/`filesystem`/`control` (routes),
`app` (the Flask factory), `server` (`run_sandbox`), `__main__` (the CLI).
"""
