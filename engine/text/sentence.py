"""Training pieces for the sentence-transformers task: datasets, losses and evaluators (imported only in workers;
the task file imports this module inside ``train``).

Each function takes the mode's columns (``roles``, in the order the loss reads them, label/score last)
explicitly; the task file owns the modes.
"""

from __future__ import annotations

from typing import Any

import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer, losses
from sentence_transformers import evaluation as ev

from engine.data.cells import label_name
from engine.errors import UserError


def to_dataset(df: Any, roles: list[str], label_ids: dict[str, int]) -> Dataset:
    """A ``datasets.Dataset`` with the mode's columns in loss order (label as class id, score as float)."""
    columns: dict[str, list[Any]] = {}
    for role in roles:
        if role == "label":
            columns[role] = [label_ids[label_name(v)] for v in df[role]]
        elif role == "score":
            columns[role] = [float(v) for v in df[role]]
        else:
            columns[role] = [str(v) for v in df[role]]
    return Dataset.from_dict(columns)


def make_loss(model: Any, mode: str, n_labels: int) -> Any:
    """SoftmaxLoss for labelled pairs, CoSENTLoss for scored pairs, MultipleNegativesRankingLoss otherwise."""
    if mode == "pair_class":
        return losses.SoftmaxLoss(model, model.get_sentence_embedding_dimension(), n_labels)
    if mode == "pair_score":
        return losses.CoSENTLoss(model)
    return losses.MultipleNegativesRankingLoss(model)


def make_evaluator(df: Any, mode: str, roles: list[str], loss: Any, label_ids: dict[str, int]) -> Any:
    """The mode's evaluator, wrapped so that its main metric is also reported as ``score``."""
    texts = {r: [str(v) for v in df[r]] for r in roles if r not in ("label", "score")}  # as to_dataset
    if mode == "pair_score":
        inner = ev.EmbeddingSimilarityEvaluator(texts["sentence1"], texts["sentence2"], [float(v) for v in df["score"]])
    elif mode == "triplet":
        inner = ev.TripletEvaluator(texts["anchor"], texts["positive"], texts["negative"])
    elif mode == "pair_class":
        labels = [label_ids[label_name(v)] for v in df["label"]]
        inner = SoftmaxAccuracy(texts["premise"], texts["hypothesis"], labels, loss)
    else:
        inner = retrieval_evaluator(texts[roles[0]], texts[roles[1]])
    return Scored(inner)


def retrieval_evaluator(queries: list[str], docs: list[str]) -> Any:
    """Each query should retrieve its own document from all validation documents."""
    corpus_ids = {d: f"d{i}" for i, d in enumerate(dict.fromkeys(docs))}
    return ev.InformationRetrievalEvaluator(
        queries={f"q{i}": q for i, q in enumerate(queries)},
        corpus={v: k for k, v in corpus_ids.items()},
        relevant_docs={f"q{i}": {corpus_ids[d]} for i, d in enumerate(docs)},
        accuracy_at_k=[1, 5],
        precision_recall_at_k=[1, 5],
        map_at_k=[10],
        write_csv=False,
    )


class SoftmaxAccuracy(ev.SentenceEvaluator):
    """Accuracy of the SoftmaxLoss classifier on (u, v, |u - v|) of the two embeddings."""

    def __init__(self, first: list[str], second: list[str], labels: list[int], loss: Any) -> None:
        super().__init__()
        self.first, self.second, self.labels, self.loss = first, second, labels, loss
        self.primary_metric = "accuracy"

    def __call__(self, model: Any, output_path: Any = None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
        u = model.encode(self.first, convert_to_tensor=True)
        v = model.encode(self.second, convert_to_tensor=True)
        classifier = self.loss.classifier
        with torch.no_grad():
            logits = classifier(torch.cat([u, v, (u - v).abs()], 1).to(classifier.weight.dtype))
        hits = (logits.argmax(1).cpu() == torch.tensor(self.labels)).float()
        return {"accuracy": hits.mean().item()}


class Scored(ev.SentenceEvaluator):
    """An evaluator's metrics, plus its primary metric again as ``score`` (the task's key metric)."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner = inner
        self.primary_metric = "score"

    def __call__(self, model: Any, output_path: Any = None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
        metrics = self.inner(model, output_path, epoch, steps)
        return {**metrics, "score": metrics[self.inner.primary_metric]}


def load_model(params: Any) -> SentenceTransformer:
    """The base model as a SentenceTransformer (a plain encoder gets mean pooling)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = SentenceTransformer(params.base_model, device=device, trust_remote_code=params.trust_remote_code)
    model.max_seq_length = params.max_length
    return model


# ---- playground ---------------------------------------------------------------------------


def embed(model_dir: Any, inputs: Any) -> dict[str, Any]:
    """The task's ``predict``: one text's embedding; a ranking of candidates (lines after the first, or
    {"query", "candidates"}); or several texts' embeddings and similarity matrix (a list, or {"sentences"})."""
    inputs = playground_request(inputs)
    model = SentenceTransformer(str(model_dir), device="cpu")
    if inputs.get("query"):
        return rank(model, str(inputs["query"]), [str(c) for c in inputs.get("candidates") or []])
    sentences = [str(s) for s in inputs["sentences"]]
    emb = model.encode(sentences, convert_to_tensor=True)
    out: dict[str, Any] = {"dimension": int(emb.shape[1]), "embeddings": emb.cpu().tolist()}
    if len(sentences) > 1:
        out["similarity"] = model.similarity(emb, emb).cpu().tolist()
    return out


def playground_request(inputs: Any) -> dict[str, Any]:
    """Playground inputs as {"sentences": [...]} or {"query": ..., "candidates": [...]}; UserError otherwise."""
    if isinstance(inputs, str):
        lines = [ln.strip() for ln in inputs.splitlines() if ln.strip()]
        inputs = (
            {"sentences": lines} if len(lines) == 1 else {"query": lines[0] if lines else "", "candidates": lines[1:]}
        )
    if isinstance(inputs, list):
        inputs = {"sentences": inputs}
    if not isinstance(inputs, dict) or not (inputs.get("sentences") or inputs.get("query")):
        raise UserError('Give a text, several lines of text (the first is the query), or {"sentences": [...]}.')
    return inputs


def rank(model: Any, query: str, candidates: list[str]) -> dict[str, Any]:
    """Candidates sorted by similarity to the query (with the query's embedding)."""
    emb = model.encode([query] + candidates, convert_to_tensor=True)
    out: dict[str, Any] = {"query": query, "dimension": int(emb.shape[1]), "embedding": emb[0].cpu().tolist()}
    if candidates:
        sims = model.similarity(emb[:1], emb[1:])[0].cpu().tolist()
        out["ranking"] = sorted(
            ({"text": c, "similarity": round(s, 6)} for c, s in zip(candidates, sims, strict=True)),
            key=lambda r: -r["similarity"],
        )
    return out
