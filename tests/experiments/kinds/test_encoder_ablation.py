"""encoder_ablation, backbone and gap: each arm trains its own foundation (or is the
configured one), and the table names each arm's facts."""

from __future__ import annotations

from dv365.experiments.kinds.backbone import Backbone
from dv365.experiments.kinds.encoder_ablation import EncoderAblation
from dv365.experiments.kinds.gap import Gap
from dv365.experiments.kinds.options import BackboneOptions, EncoderAblationOptions, GapOptions
from tests.experiments.kinds.outcomes import SETTING, WrittenOutcome, average


def test_every_encoder_and_view_is_an_arm_with_its_foundation_override():
    arms = EncoderAblation(EncoderAblationOptions(), name="e").arms(SETTING)
    assert [a.name for a in arms] == ["lce/token", "lce/dim", "mlp/token", "mlp/dim",
                                      "transformer/token", "transformer/dim", "fsa/token",
                                      "fsa/dim", "identity"]
    assert arms[1].foundation == {"encoder": {"type": "lce", "view": "dim"}}


def test_the_ablation_table_ranks_the_encoders():
    kind = EncoderAblation(EncoderAblationOptions(encoders=(
        {"type": "lce", "view": "token"}, {"type": "identity"})), name="e")
    doc = kind.document(WrittenOutcome(
        deltas_by={("lce/token", "ranking", 0, None, None): average(-0.002),
                   ("identity", "ranking", 0, None, None): average(-0.0005)},
        foundations={"lce/token": {"encoder_parameters": 120, "examples_per_s": 900.0}}))
    assert doc["table"][0] == {"arm": "lce/token", "encoder parameters": 120,
                               "foundation examples/s": 900.0, "average NE delta": "-0.20%"}
    assert doc["reading"].startswith("lce/token gives the lowest average NE delta")


def test_the_configured_backbone_is_the_base_foundation_and_others_replace_it():
    setting = SETTING.__class__(**{**SETTING.__dict__, "foundation": {
        "backbone": {"type": "dlrm", "embedding_dim": 16}}})
    arms = Backbone(BackboneOptions(), name="b").arms(setting)
    assert [(a.name, a.foundation) for a in arms] == [("dlrm", {}), ("siamese", {
        "backbone": {"type": "siamese"}})]
    assert set(arms[0].adapters) == {"ranking", "retrieval"}


def test_a_gap_equal_to_the_configured_one_is_the_base_foundation():
    setting = SETTING.__class__(**{**SETTING.__dict__, "foundation": {"gap_hours": 24.0}})
    arms = Gap(GapOptions(), name="g").arms(setting)
    assert [(a.name, a.foundation) for a in arms] == [("gap 0h", {"gap_hours": 0.0}),
                                                      ("gap 24h", {})]
