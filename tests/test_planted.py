"""Planted-feature language: seeded, labels true to the process by construction, scoring."""

import pytest
import torch

from saekit.data.planted import planted_documents, planted_language
from saekit.errors import DataError
from saekit.evaluation.ground_truth import label_recovery, one_hot_labels, recovery_summary
from saekit.evaluation.planted_scores import dataset_labels


@pytest.fixture(scope="module")
def small():
    lang = planted_language("planted:small")
    return lang, *lang.rows(64, 64, seed=3)


def test_generator_is_deterministic_per_seed(small):
    lang, tokens, labels = small
    again = lang.rows(64, 64, seed=3)
    assert torch.equal(tokens, again[0]) and torch.equal(labels, again[1])
    assert not torch.equal(tokens, lang.rows(64, 64, seed=4)[0])
    assert planted_documents("small", 5, seed=1) == planted_documents("small", 5, seed=1)


def test_sizes_fit_the_spec(small):
    lang = small[0]
    assert 512 <= lang.vocab_size <= 2048
    assert len(lang.label_names) >= 50
    assert len(lang.tokenizer) == lang.vocab_size


def test_labels_match_the_process(small):
    lang, tokens, labels = small
    idx = {n: i for i, n in enumerate(lang.label_names)}
    flat_t, flat_l = tokens.flatten(), labels.flatten(0, 1)
    words = [lang.words[t] for t in flat_t.tolist()]
    # token-level: a word's class label is on exactly when the word belongs to the class
    for i, w in enumerate(words):
        if w.startswith("n") and w.endswith("_pl"):
            assert flat_l[i, idx["noun_pl"]]
        assert bool(flat_l[i, idx["open_bracket"]]) == (w == "(")
    # in_bracket: exactly the tokens between "(" and the next ")" (a row's BOS carries no label)
    inside = False
    for i, w in enumerate(words):
        if w == ")":
            inside = False
        assert bool(flat_l[i, idx["in_bracket"]]) == (inside and w != "<|bos|>"), i
        if w == "(":
            inside = True
    # pending number: the gap tokens after a noun agree with the verb that closes the clause
    for i in torch.nonzero(flat_l[:, idx["pending_pl"]]).flatten().tolist():
        j = i
        while j < len(words) - 1 and flat_l[j, idx["pending_pl"]]:
            j += 1
        assert words[j].endswith("_pl") or words[j] in ("<|eos|>", "<|bos|>"), words[j]
    # induction: the token and its predecessor occurred as a pair earlier in the stream (rows joined, BOS dropped)
    keep = flat_t != lang.bos
    stream, induction = flat_t[keep].tolist(), flat_l[keep, idx["induction"]]
    assert induction.sum() > 20
    for p in torch.nonzero(induction).flatten().tolist():
        assert (stream[p - 1], stream[p]) in set(zip(stream[: p - 1], stream[1:p]))
    # every labelled token of a document has exactly one topic and one matching sub-topic
    topics = labels[..., [idx[f"topic_{t}"] for t in range(lang.spec.n_topics)]].sum(-1)
    assert set(topics[labels.any(-1)].tolist()) == {1}


def test_indicator_latents_recover_their_labels(small):
    lang, tokens, labels = small
    y = labels.flatten(0, 1)
    y = y[y.any(1)]
    acts = torch.cat([y.float(), torch.rand(len(y), 5)], 1)  # one exact latent per label + noise latents
    rec = label_recovery(acts, y)
    assert (rec["best_f1"][y.any(0).numpy()] == 1.0).all()
    summary = recovery_summary(acts, y, lang.is_contextual)
    assert summary["contextual"]["recovered_fraction"] == 1.0 and summary["token_level"]["mean_matched_mcc"] > 0.99
    shuffled = recovery_summary(acts[torch.randperm(len(acts))], y, lang.is_contextual)
    assert shuffled["contextual"]["recovered_fraction"] < 0.2


def test_bad_requests_are_one_sentence():
    with pytest.raises(DataError, match="planted language 'nope' is not known"):
        planted_language("planted:nope")
    with pytest.raises(DataError, match="carries no ground-truth labels"):
        dataset_labels("tinyshakespeare", 4, 16)
    with pytest.raises(DataError, match="no ground-truth labels"):
        one_hot_labels({})


def test_planted_dataset_goes_through_the_model_training_data_path():
    from saekit.config import ModelConfig
    from saekit.data import load_text_dataset
    from saekit.models.train import dataset_tokens

    lang = planted_language("small")
    tok, (train, val) = dataset_tokens(ModelConfig(n_ctx=32, vocab_size=lang.vocab_size), "planted:small")
    assert len(tok) == lang.vocab_size and train.max() < lang.vocab_size and len(val) >= 1
    first_doc = planted_documents("small", 1)[0]
    n = min(31, len(first_doc))
    assert train[0, 1 : 1 + n].tolist() == first_doc[:n]  # BOS, then the first document's tokens
    with pytest.raises(DataError, match="'nope' is not known"):
        load_text_dataset("planted:nope")


def test_docs_example_runs():
    import contextlib
    import io
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parents[1] / "docs" / "planted.md"
    (code,) = re.findall(r"<!-- runnable -->\n```python\n(.*?)```", page.read_text(), re.S)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(page), "exec"), {"__name__": "__doc_example__"})
    first, second = out.getvalue().splitlines()
    assert first == "532 66 36 (64, 64, 66)"
    assert second.split()[0] == "<|bos|>" and len(second.split()) == 12
