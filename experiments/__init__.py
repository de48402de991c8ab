"""Research code around ospo, not shipped in the image: a CPU GRPO/OSPO trainer that closes the
loop against the service (`python -m experiments.train`) and the study of the paper's claims
(`python -m experiments.study`). It may import `service` and `trainer_client`; nothing
imports it."""
