"""A local FirecREST v2-compatible target: an honest stand-in for an HPC centre.

It follows the real API's paths, fields, states and errors (checked against
responses recorded from a real FirecREST v2 server on real Slurm) and runs
batch jobs for real as local processes following Slurm's model. It does not
do real scheduling, accounting, multiple nodes, S3 transfers or POSIX users.
"""
