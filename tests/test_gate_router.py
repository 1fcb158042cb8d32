"""Scope fitting and routing: fake edits and features (fast), the real bridge's hooks (slow).

The builders here (``fake_edit``, ``FakeFeatures``, ``steer_acts``) are shared with the registry
tests: edits from random activations and ``GaussianMap.fit``, and features that cluster by
subject, so routing and persistence are tested without a model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from types import SimpleNamespace

import pytest
import torch

from sake_lens.errors import GateError
from sake_lens.gate import (
    GateConfig,
    OutOfScope,
    Scope,
    ScopeRouter,
    fit_scope,
    last_sentence,
)
from sake_lens.gate.scope import prompt_views, quoted_spans, sentences
from sake_lens.model.sites import Site
from sake_lens.prompts.distributions import PromptSet
from sake_lens.prompts.request import EditRequest
from sake_lens.steer.edit import Edit, EditConfig
from sake_lens.steer.hooks import steering_hooks
from sake_lens.transport import GaussianMap

SITE = "ln_final.hook_out"
D = 16
SUBJECTS = ("Danielle Darrieux", "Leonhard Euler", "Toko Yasuda", "Apple A5", "Kanye West", "Rome")
TEMPLATES = (
    "The mother tongue of {} is",
    "{} grew up speaking",
    "The first language of {} was",
    "As a child, {} spoke",
    "{}'s native tongue is",
    "{} was raised speaking",
)
# Gates for fake features: no same-subject-other-relation negatives (the fake features cluster
# by subject only).
FAKE_GATE = GateConfig(kind="hidden", metric="euclidean", n_relations=0)


def _vec(key: str, d: int = D) -> torch.Tensor:
    seed = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
    return torch.randn(d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


FAR = "Far away, nothing at all like any edit:"


class FakeFeatures:
    """Features that cluster by subject: centre 10 * v(subject), noise 0.5 * v(prompt).

    Prompts without a known subject get their own centre 10 * v(prompt); prompts starting
    with :data:`FAR` lie 100 times farther than anything else.
    """

    def __init__(self, d: int = D):
        self.d = d

    def __call__(self, prompts: Sequence[str], feature: str) -> torch.Tensor:
        rows = []
        for p in prompts:
            subject = next((s for s in SUBJECTS if s in p), p)
            scale = 1000.0 if p.startswith(FAR) else 10.0
            rows.append(scale * _vec(subject, self.d) + 0.5 * _vec("noise|" + p, self.d))
        return torch.stack(rows) if rows else torch.empty(0, self.d, dtype=torch.float64)


class FakeEmbedder:
    """Stands in for the sentence embedder, with :class:`FakeFeatures`."""

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        return FakeFeatures()(texts, "embedding")


def fake_edit(
    subject: str,
    template: str = TEMPLATES[0],
    *,
    old: str = "French",
    new: str = "English",
    d: int = D,
    site: str = SITE,
    seed: int = 0,
    model_id: str = "fake-model",
) -> Edit:
    """An edit from random activations (GaussianMap.fit) with paraphrases built from TEMPLATES."""
    request = EditRequest(subject, template, old, new)
    paras = list(dict.fromkeys([request.text] + [t.format(subject) for t in TEMPLATES]))
    g = torch.Generator().manual_seed(seed + sum(map(ord, subject + new)))
    src = torch.randn(12, d, generator=g, dtype=torch.float64)
    tgt = (
        src
        @ (
            torch.eye(d, dtype=torch.float64)
            + 0.1 * torch.randn(d, d, generator=g, dtype=torch.float64)
        )
        + 3
    )
    config = EditConfig(site=site)
    return Edit(
        request,
        Site(site),
        GaussianMap().fit(src, tgt),
        config,
        model_id,
        d,
        False,
        True,
        1.0,
        12,
        12,
        hashlib.sha256(repr(paras).encode()).hexdigest(),
        prompts=PromptSet(paras, paras, paras, [True] * len(paras)),
    )


def steer_acts(edits: Sequence[Edit], router: ScopeRouter, acts: torch.Tensor) -> torch.Tensor:
    """Apply the steering hooks to ``(batch, d)`` activations at the last position (no model)."""
    act = acts[:, None, :].clone()  # (B, 1, d)
    for _, fn in steering_hooks(list(edits), router):
        act = fn(act, hook=None)
    return act[:, 0, :]


def _scopes(edits: Sequence[Edit], config: GateConfig = FAKE_GATE) -> list[Scope]:
    feats = FakeFeatures()
    prompts = [p for e in edits for p in e.prompts.paraphrases]
    return [
        fit_scope(
            e, config, features=feats, neighbours=[p for p in prompts if e.request.subject not in p]
        )
        for e in edits
    ]


def test_fit_scope_calibrates_and_reports() -> None:
    edit = fake_edit("Danielle Darrieux")
    scope = fit_scope(edit, FAKE_GATE, features=FakeFeatures())
    cal = scope.calibration
    assert scope.feature == SITE
    assert cal.threshold > 0 and cal.guaranteed
    assert cal.auroc == 1.0 and cal.tpr == 1.0 and cal.n_in >= 1
    assert set(cal.fpr_by_kind) == {"subject", "generic"}
    feats = FakeFeatures()
    assert bool(scope.accepts(feats([edit.request.text], SITE)).all())
    assert not bool(scope.accepts(feats([FAR + " hello"], SITE)).any())
    score = scope.score(feats([edit.request.text, FAR + " hello"], SITE))
    assert score[0] > 0.5 > score[1] >= 0
    assert len(scope.prompts_hash) == 64


def test_fit_scope_with_given_prompts_and_fixed_threshold() -> None:
    edit = fake_edit("Rome")
    cfg = GateConfig(kind="hidden", threshold=3.0)
    scope = fit_scope(
        edit,
        cfg,
        features=FakeFeatures(),
        out_of_scope=["Paris is", "Tokyo is", "The sea is"],
        in_scope=["Rome is known for"],
    )
    assert scope.threshold == 3.0 and scope.calibration.n_in == 1 and scope.calibration.n_out == 3
    oos = OutOfScope.of(["A", "B"], "given") + OutOfScope.of(["C"], "generic")
    assert oos.kinds == ("given", "given", "generic") and len(oos) == 3


def test_hidden_gate_needs_the_model() -> None:
    with pytest.raises(GateError, match="needs the model"):
        fit_scope(fake_edit("Rome"), GateConfig(kind="hidden"))


def test_router_sends_each_prompt_to_its_edit_or_none() -> None:
    edits = [fake_edit(s) for s in SUBJECTS[:4]]
    router = ScopeRouter(edits, _scopes(edits))
    feats = FakeFeatures()
    probes = [e.request.text for e in edits] + ["Toko Yasuda plays the", FAR + " the weather"]
    routes = router.route(feats(probes, SITE), SITE)
    assert routes.tolist() == [0, 1, 2, 3, 2, -1]
    assert router.last_distances is not None and router.last_distances.shape == (6, 4)
    # Another site: edits living at ln_final are not applied there.
    assert router.route(feats(probes, SITE), "blocks.3.hook_resid_post").tolist() == [-1] * 6


def test_decide_picks_the_smallest_ratio_among_accepting_edits() -> None:
    edits = [fake_edit(s) for s in SUBJECTS[:3]]
    router = ScopeRouter(edits, _scopes(edits))
    router.thresholds = torch.tensor([1.0, 4.0, 2.0], dtype=torch.float64)
    dist = torch.tensor(
        [[0.9, 2.0, 1.5], [1.5, 3.0, 2.5], [0.5, 0.4, 0.1], [float("inf"), 5.0, float("nan")]],
        dtype=torch.float64,
    )
    assert router.decide(dist).tolist() == [1, 1, 2, -1]


def test_steering_only_moves_routed_rows() -> None:
    edits = [fake_edit(s) for s in SUBJECTS[:3]]
    router = ScopeRouter(edits, _scopes(edits))
    acts = FakeFeatures()([edits[1].request.text, FAR + " the weather"], SITE)
    out = steer_acts(edits, router, acts)
    assert torch.equal(out[1], acts[1])
    alpha = edits[1].config.alpha  # h + alpha (T(h) - h)
    assert torch.allclose(out[0], acts[0] + alpha * edits[1].map.displacement(acts[0:1])[0])


def test_router_checks_its_inputs() -> None:
    edits = [fake_edit(s) for s in SUBJECTS[:2]]
    scopes = _scopes(edits)
    with pytest.raises(GateError, match="one per edit"):
        ScopeRouter(edits, scopes[:1])
    emb_scope = Scope(GateConfig(), "embedding", scopes[0].stats, scopes[0].calibration)
    with pytest.raises(GateError, match="tokenizer"):
        ScopeRouter(edits[:1], [emb_scope])
    deep = Scope(
        GateConfig(kind="hidden", layer=20),
        "blocks.20.hook_resid_post",
        scopes[0].stats,
        scopes[0].calibration,
    )
    with pytest.raises(GateError, match="runs after"):
        ScopeRouter([fake_edit("Rome", site="blocks.5.hook_resid_post")], [deep])


def test_last_sentence() -> None:
    assert last_sentence("It rained. The capital of Peru is") == "The capital of Peru is"
    assert last_sentence("Is it? Yes! The capital of Peru is") == "The capital of Peru is"
    assert last_sentence("Line one\nThe capital of Peru is") == "The capital of Peru is"
    assert last_sentence("The capital of Peru is") == "The capital of Peru is"
    assert last_sentence("  ") == ""


def test_sentences_and_the_sentences_view() -> None:
    assert sentences("X is Y? Really? Reconsider:") == ["X is Y?", "Really?", "Reconsider:"]
    assert sentences("One sentence") == ["One sentence"]
    views = prompt_views(["A. B. C", "Solo"], "embedding@sentences")
    # the full prompt, then sentence j of each prompt (a one-sentence prompt repeats itself)
    assert views == [["A. B. C", "Solo"], ["A.", "Solo"], ["B.", "Solo"], ["C", "Solo"]]
    long = " ".join(f"S{i}." for i in range(10)) + " Q"
    assert prompt_views([long], "embedding@sentences")[1:] == [
        [s] for s in ["S5.", "S6.", "S7.", "S8.", "S9.", "Q"]
    ]  # the last MAX_SENTENCES


def _route_by_view(edits: list[Edit], text: str, prompts: list[str]) -> list[int]:
    """Route ``prompts`` by text over embedding gates that read the ``text`` view."""
    cfg = GateConfig(kind="embedding", text=text, n_relations=0)
    scopes = [fit_scope(e, cfg, features=FakeFeatures()) for e in edits]
    router = ScopeRouter(
        edits, scopes, model=SimpleNamespace(tokenizer=object()), embedder=FakeEmbedder()
    )
    return router.route_texts(prompts).tolist()


def test_sentences_view_keeps_a_follow_up_quoting_the_fact_in_scope() -> None:
    edits = [fake_edit(s) for s in SUBJECTS[:2]]
    probe = f"{FAR} it rained. {edits[0].request.text} English? Really? Reconsider it."
    routes = {}
    for text in ("both", "sentences"):
        routes[text] = _route_by_view(edits, text, [probe])
    assert routes == {"both": [-1], "sentences": [0]}


def test_quoted_spans_and_the_quotes_view() -> None:
    text = "It can't be, the answer to 'The capital of Peru is' is wrong. Reconsider:"
    assert quoted_spans(text) == ["The capital of Peru is"]
    assert quoted_spans('He said "hello there" and “the big dog”.') == [
        "hello there",
        "the big dog",
    ]
    assert quoted_spans("one 'word' only, and the King's 'x'") == []  # two words or more
    assert quoted_spans("no quotes here") == []
    views = prompt_views([text, "Solo"], "embedding@quotes")
    # the sentences view, then the quoted spans (a prompt without any repeats itself)
    assert views[0] == [text, "Solo"] and views[-1] == ["The capital of Peru is", "Solo"]
    assert views[:-1] == prompt_views([text, "Solo"], "embedding@sentences")


def test_quotes_view_keeps_a_follow_up_quoting_the_prompt_early_in_scope() -> None:
    edits = [fake_edit(s) for s in SUBJECTS[:2]]
    filler = " ".join(f"It rained {i}." for i in range(8))  # pushes past MAX_SENTENCES
    probe = f"{FAR} recall '{edits[0].request.text}'. {filler} Give the correct answer:"
    routes = {}
    for text in ("sentences", "quotes"):
        routes[text] = _route_by_view(edits, text, [probe, edits[1].request.text])
    assert routes["quotes"] == [0, 1] and routes["sentences"][0] != 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [("full", -1), ("both", 0), ("last-sentence", 0), ("sentences", 0), ("quotes", 0)],
)
def test_text_views_judge_a_lead_in_by_its_last_sentence(text: str, expected: int) -> None:
    edits = [fake_edit(s) for s in SUBJECTS[:2]]
    cfg = GateConfig(kind="embedding", text=text, n_relations=0)
    scopes = [fit_scope(e, cfg, features=FakeFeatures()) for e in edits]
    router = ScopeRouter(
        edits, scopes, model=SimpleNamespace(tokenizer=object()), embedder=FakeEmbedder()
    )
    probe = f"{FAR} it rained. {edits[0].request.text}"
    assert router.route_texts([probe, edits[1].request.text]).tolist() == [expected, 1]


# ----------------------------------------------------------------------------- the real bridge
@pytest.mark.slow
def test_bridge_passes_token_ids_to_embed_hook_in(model) -> None:
    from sake_lens.model.tokens import tokenize_batch

    seen = {}

    def grab(act: torch.Tensor, hook) -> None:
        seen["x"] = act

    batch = tokenize_batch(model, ["The mother tongue of Danielle Darrieux is", "Paris is"])
    with model.hooks(fwd_hooks=[("embed.hook_in", grab)]):
        model(batch.tokens, attention_mask=batch.attention_mask)
    assert seen["x"].dtype == torch.long and torch.equal(seen["x"].cpu(), batch.tokens.cpu())


@pytest.mark.slow
def test_embedding_router_reads_the_prompt_inside_forward_and_generate(model) -> None:
    from sake_lens.gate import SentenceEmbedder
    from sake_lens.registry import EditBook
    from sake_lens.steer.generation import generate

    d = int(model.cfg.d_model)
    edits = [
        fake_edit("Danielle Darrieux", d=d, model_id="SmolLM2-135M-Instruct"),
        fake_edit(
            "Leonhard Euler", "The native language of {} is", d=d, model_id="SmolLM2-135M-Instruct"
        ),
    ]
    book = EditBook(model=model, embedder=SentenceEmbedder())
    for e in edits:
        book.add(e)
    prompts = [
        "The mother tongue of Danielle Darrieux is",
        "The weather today is",
        "The native language of Leonhard Euler is",
    ]
    router = book.router()
    with book.steer(model):
        cached = generate(model, prompts, max_new_tokens=3)
        assert router.last_texts == prompts  # padding stripped, generated tokens not included
        assert router.last_routes.tolist() == [0, -1, 1]
        uncached = generate(model, prompts, max_new_tokens=3, use_kv_cache=False)
        assert router.last_texts == prompts
    assert cached == uncached
    plain = generate(model, prompts[1:2], max_new_tokens=3)
    assert cached[1] == plain[0]  # the out-of-scope prompt is not steered
