"""The SLURM backend: one SLURM job per trial, submitted and followed through submitit."""
