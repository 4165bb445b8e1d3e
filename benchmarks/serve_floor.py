"""The framework's floor for the serving benchmark: a bare FastAPI endpoint returning a constant.

`POST /predict` answers a constant without reading the body; `GET /health` answers 200; `POST /parse` (for
information) reads and parses the JSON body first. Run under the same uvicorn settings as `mlops-nb serve`
(benchmarks/serve_load.py starts both), it is the most a FastAPI-on-uvicorn server can answer on this machine: the
model server's requests/s are reported as a share of it.
"""
import orjson
from fastapi import FastAPI, Request

app = FastAPI()
ANSWER = {"model": "floor", "version": 0, "predictions": [">50K"], "probabilities": [{"<=50K": 0.25, ">50K": 0.75}]}


@app.post("/predict")
async def predict():
    "A constant answer shaped like the model server's."
    return ANSWER


@app.post("/parse")
async def parse(request: Request):
    "The constant after reading and parsing the JSON body (for information: what the body alone costs)."
    orjson.loads(await request.body())
    return ANSWER


@app.get("/health")
async def health():
    "Alive."
    return {"status": "ok"}
