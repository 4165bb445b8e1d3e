"""The tables of the generalisation benchmark: scikit-learn's bundled datasets and generated tables of known structure.

`load_table(name) -> (frame, target, task)`. The scikit-learn tables are the bundled files (no download), with their
columns renamed to snake_case and their classes as text labels. The generated tables are drawn from a fixed seed (the
same table in every repetition; the repetitions vary the split and the model seeds):

- `credit_like`: 1,000 rows shaped like a small credit-scoring table (about 30% bad), 6 numeric and 8 categorical
  columns, the outcome a logistic function of a weak linear score in a few of them plus noise. It is generated, not
  real credit data: scikit-learn ships none, and this machine cannot download one.
- `linear`: 20,000 rows, outcome a logistic function of a linear score in 6 numeric and 2 categorical columns (one
  more numeric and one categorical column are noise); 5% of two columns missing. A linear model is near the Bayes rate.
- `interactions`: 20,000 rows, outcome a logistic function of an XOR of two signs, a threshold interaction between a
  numeric and a categorical column and a small linear term; a linear model cannot represent it, trees can.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

SKLEARN = {"breast_cancer": ("load_breast_cancer", "binary"), "iris": ("load_iris", "multiclass"),
           "wine": ("load_wine", "multiclass"), "digits": ("load_digits", "multiclass"),
           "diabetes": ("load_diabetes", "regression")}
GENERATED = {"credit_like": "binary", "linear": "binary", "interactions": "binary"}
DATA_SEED = 2024        # the generated tables' seed (fixed: the tables do not change between repetitions)


def _snake(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", str(name).lower()).strip("_")


def sklearn_table(name: str) -> tuple[pd.DataFrame, str, str]:
    """A bundled scikit-learn dataset as (frame, "target", task); class targets as text labels."""
    import sklearn.datasets as ds
    loader, task = SKLEARN[name]
    b = getattr(ds, loader)(as_frame=True)
    df = b.frame.rename(columns=_snake)
    if task != "regression":
        names = [f"digit_{c}" for c in b.target_names] if name == "digits" else [_snake(c) for c in b.target_names]
        df["target"] = np.asarray(names, dtype=object)[df["target"].to_numpy(int)]
    return df, "target", task


def _sigmoid(z): return 1 / (1 + np.exp(-z))


def credit_like(n: int = 1000, seed: int = DATA_SEED) -> pd.DataFrame:
    """A generated 1,000-row credit-like table (`class`: good/bad, about 30% bad) with a weak, mostly linear signal."""
    rng = np.random.default_rng(seed)
    cat = lambda levels, p=None: rng.choice(levels, size=n, p=p)
    df = pd.DataFrame({
        "checking_status": cat(["no_account", "lt_0", "0_to_200", "ge_200"], [0.39, 0.27, 0.27, 0.07]),
        "duration": rng.choice([6, 9, 12, 15, 18, 24, 30, 36, 48, 60], size=n),
        "credit_history": cat(["critical", "existing_paid", "delayed", "all_paid", "no_credits"], [0.29, 0.53, 0.09, 0.05, 0.04]),
        "purpose": cat(["radio_tv", "new_car", "furniture", "used_car", "business", "education", "repairs", "other"],
                       [0.28, 0.23, 0.18, 0.10, 0.10, 0.05, 0.03, 0.03]),
        "credit_amount": np.round(np.exp(rng.normal(7.9, 0.75, n))),
        "savings": cat(["lt_100", "100_to_500", "500_to_1000", "ge_1000", "unknown"], [0.6, 0.1, 0.06, 0.05, 0.19]),
        "employment": cat(["unemployed", "lt_1", "1_to_4", "4_to_7", "ge_7"], [0.06, 0.17, 0.34, 0.17, 0.26]),
        "installment_rate": rng.integers(1, 5, n),
        "age": np.clip(np.round(rng.gamma(6.0, 6.0, n) + 19), 19, 75),
        "housing": cat(["own", "rent", "free"], [0.71, 0.18, 0.11]),
        "existing_credits": rng.choice([1, 2, 3, 4], size=n, p=[0.63, 0.33, 0.03, 0.01]),
        "job": cat(["skilled", "unskilled", "management", "unemployed"], [0.63, 0.2, 0.15, 0.02]),
        "num_dependents": rng.choice([1, 2], size=n, p=[0.85, 0.15]),
        "foreign_worker": cat(["yes", "no"], [0.96, 0.04]),
    })
    eff = lambda col, m: df[col].map(m).fillna(0.0).to_numpy(float)
    score = (eff("checking_status", {"no_account": -1.1, "lt_0": 0.6, "0_to_200": 0.2, "ge_200": -0.5})
             + eff("credit_history", {"critical": -0.6, "delayed": 0.3, "all_paid": 0.8, "no_credits": 0.9})
             + eff("savings", {"lt_100": 0.3, "ge_1000": -0.6, "unknown": -0.5})
             + eff("purpose", {"used_car": -0.7, "new_car": 0.3, "education": 0.4})
             + 0.03 * (df["duration"] - 20) + 0.25 * (np.log(df["credit_amount"]) - 7.9)
             + 0.15 * (df["installment_rate"] - 2.5) - 0.015 * (df["age"] - 35) - 0.85)
    df["class"] = np.where(rng.random(n) < _sigmoid(score + rng.normal(0, 0.3, n)), "bad", "good")
    return df


def linear(n: int = 20000, seed: int = DATA_SEED) -> pd.DataFrame:
    """A generated table whose outcome is a logistic function of a linear score (numeric and categorical terms)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 7))
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(1, 8)])                 # x7 is noise
    df["region"] = rng.choice(["north", "south", "east", "west", "centre"], size=n)
    df["plan"] = rng.choice(["basic", "plus", "pro"], size=n, p=[0.5, 0.3, 0.2])
    df["colour"] = rng.choice(["red", "green", "blue", "grey"], size=n)            # noise
    w = np.array([1.0, -0.8, 0.6, 0.4, -0.3, 0.2])
    score = (X[:, :6] @ w + df["region"].map({"north": 0.5, "south": -0.4, "east": 0.2, "west": -0.3, "centre": 0.0})
             + df["plan"].map({"basic": -0.3, "plus": 0.2, "pro": 0.6}) - 0.2)
    df["target"] = np.where(rng.random(n) < _sigmoid(score.to_numpy(float)), "yes", "no")
    for c in ("x2", "region"): df.loc[rng.choice(n, n // 20, replace=False), c] = None
    return df


def interactions(n: int = 20000, seed: int = DATA_SEED) -> pd.DataFrame:
    """A generated table whose outcome depends on an XOR of two signs and a numeric-by-categorical threshold rule."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, 6))
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(1, 7)])                  # x5, x6 are noise
    df["segment"] = rng.choice(["a", "b", "c", "d"], size=n)
    xor = np.sign(X[:, 0]) * np.sign(X[:, 1])
    rule = (X[:, 2] > 0.3) & df["segment"].isin(["a", "b"]).to_numpy()
    score = 2.0 * xor + 2.0 * rule - 0.8 * (df["segment"] == "d").to_numpy() + 0.5 * X[:, 3] - 0.4
    df["target"] = np.where(rng.random(n) < _sigmoid(score), "yes", "no")
    df.loc[rng.choice(n, n // 20, replace=False), "x4"] = np.nan
    return df


def load_table(name: str) -> tuple[pd.DataFrame, str, str]:
    """The table `name` as (frame, target column, task)."""
    if name in SKLEARN: return sklearn_table(name)
    if name == "credit_like": return credit_like(), "class", "binary"
    if name in GENERATED: return globals()[name](), "target", GENERATED[name]
    raise KeyError(f"unknown table {name!r}; known: adult, {', '.join([*SKLEARN, *GENERATED])}")
