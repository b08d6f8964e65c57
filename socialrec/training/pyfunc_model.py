"""The MLflow pyfunc wrapper of a ModelBundle, logged as "model from code" (nothing is pickled).

``mlflow.pyfunc.load_model(uri).predict(pd.DataFrame({"user_id": [...], "k": [10, ...]}))`` returns
the top-k item ids per user, so a registered version can be checked without the service.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

from socialrec.models.bundle import ModelBundle


class BundleModel(PythonModel):
    def load_context(self, context: PythonModelContext) -> None:
        self.bundle = ModelBundle.load(context.artifacts["bundle"])

    def predict(self, context: PythonModelContext, model_input: pd.DataFrame, params=None):
        from socialrec.features.ranking import topk_scores

        b = self.bundle
        out: list[list[str]] = []
        for user, k in zip(
            model_input["user_id"], model_input.get("k", [10] * len(model_input)), strict=True
        ):
            idx = b.users.get(str(user))
            if idx is None:
                out.append([])
                continue
            items, _ = topk_scores(b.user_emb[[idx]], b.item_emb, int(k), exclude=b.seen[[idx]])
            out.append(b.items.to_ids(items[0][items[0] >= 0]))
        return pd.Series(out, dtype=object)


mlflow.models.set_model(BundleModel())
_ = np  # numpy is a runtime requirement of the bundle; keep the import explicit for readers
