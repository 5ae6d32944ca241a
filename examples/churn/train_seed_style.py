"""The seed's training script as published: hard-coded /opt/ml paths, no SM_* variables.

Kept to show that such scripts run on the local SageMaker too (it points /opt/ml at the
running job's directory); prefer train.py's SM_* conventions in new code.
"""

from __future__ import annotations

import argparse

import joblib
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n_estimators", type=int, default=100)
    parser.add_argument("--max_depth", type=int, default=5)
    args, _ = parser.parse_known_args()

    train_data = pd.read_csv("/opt/ml/input/data/train/train.csv")
    X = train_data.drop("target", axis=1)
    y = train_data["target"]

    model = RandomForestClassifier(n_estimators=args.n_estimators, max_depth=args.max_depth)
    model.fit(X, y)

    joblib.dump(model, "/opt/ml/model/model.joblib")
