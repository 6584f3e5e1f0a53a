"""A handler module that starts a run at import, during INIT: refused under SnapStart."""

import wandb_nexus as wandb

try:
    wandb.init(project="model-tests")
    REFUSED = ""
except wandb.UsageError as err:
    REFUSED = str(err)


def handler(event, context):
    return {"refused": REFUSED}
