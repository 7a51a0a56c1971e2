"""Published outcomes the simulator is held against, each with its source, and the shapes of published models that
Cerebras serves (Llama 3.1, planning only: grouped-query attention, gated FFN, untied embeddings, rotary positions).

``comparison(shapes)`` plans every outcome that has a public figure and returns rows of (outcome, published,
simulated, distance, source): the README's "simulated vs published" table. ``shapes`` maps the Cerebras-GPT preset
names to their shapes (wse does not import model/; runtime passes model.config's presets).
"""

from __future__ import annotations

from wse.shape import PlanShape

CEREBRAS_GPT_CARD = "P/V: Cerebras-GPT paper (arXiv 2304.03208) Table 8 and the HF model cards' training table"
TRAINING_FLOPS = {"111M": 2.6e18, "256M": 1.3e19, "590M": 6.1e19, "1.3B": 2.8e20, "2.7B": 1.1e21, "6.7B": 6.3e21,
                  "13B": 2.3e22}

# Cerebras-GPT paper Sec. 5.3, Table 6: FLOP/s utilisation of a training run relative to one CS-2 training 111M
# (systems, sequences per system, relative utilisation). 256M's row was not read. The 13B row reads "12 systems,
# 1080 -> 45 per CS-2", which does not divide; 45 per system on 12 systems is planned.
TABLE6_SOURCE = "P: Cerebras-GPT paper, Table 6 (Andromeda utilisation relative to 1 CS-2 on 111M)"
TABLE6 = {"111M": (1, 120, 1.00), "590M": (1, 264, 0.92), "1.3B": (4, 132, 0.96), "2.7B": (4, 132, 0.96),
          "6.7B": (16, 65, 1.05), "13B": (12, 45, 1.02)}
LINEAR_SCALING = (0.91, "P: Cerebras-GPT paper Sec. 5.3: 'linear scaling within 9% for all model sizes and CS-2 "
                        "system counts'")

MEMORYX_PAIRINGS = ((1.2e15, 24e12, "V/S: CS-3 with 1,200 TB MemoryX for 24T-parameter models"),
                    (2.4e15, 120e12, "V/S: 2.4 PB MemoryX for 120T-parameter models"))
SANDIA_1T = "S: Cerebras and Sandia National Laboratories trained a ~1T-parameter model on 16 CS-3 systems (2024)"

INFERENCE = (  # (model, decode tokens/s per request, source); wafer counts and batch sizes are not published
    ("llama3.1-8b", 1800, "V: Cerebras Inference launch, Aug 2024: 1,800 tokens/s for Llama 3.1 8B"),
    ("llama3.1-70b", 450, "V: Cerebras Inference launch, Aug 2024: 450 tokens/s for Llama 3.1 70B"),
    ("llama3.1-70b", 2100, "V: Cerebras blog 'Cerebras Inference 3x faster', Oct 2024: 2,100 tokens/s for 70B"),
    ("llama3.1-405b", 969, "V/S: Cerebras, Nov 2024: 969 tokens/s for Llama 3.1 405B (1K-token prompt)"),
)

_LLAMA = "V: Meta Llama 3.1 model card / config.json"
PLANNING_SHAPES: dict[str, tuple[PlanShape, str]] = {
    "llama3.1-8b": (PlanShape("llama3.1-8b", 32, 4096, 32, 128, 14336, 128256, 131072, n_kv_heads=8, ffn_gated=True,
                              tied_embeddings=False, learned_positions=False, biases=False), _LLAMA),
    "llama3.1-70b": (PlanShape("llama3.1-70b", 80, 8192, 64, 128, 28672, 128256, 131072, n_kv_heads=8,
                               ffn_gated=True, tied_embeddings=False, learned_positions=False, biases=False), _LLAMA),
    "llama3.1-405b": (PlanShape("llama3.1-405b", 126, 16384, 128, 128, 53248, 128256, 131072, n_kv_heads=8,
                                ffn_gated=True, tied_embeddings=False, learned_positions=False, biases=False), _LLAMA),
}
# A dense GPT-style 1T shape (Sandia's model's shape is unpublished): 128 layers of d 25,600 = 1.008T parameters.
ONE_T = PlanShape("gpt-1t", 128, 25600, 200, 128, 102400, 50257, 2048, n_kv_heads=200, batch_size=1024)
# 24T at the MemoryX pairing: 256 layers of d 88,064 = 23.8T parameters.
TWENTY_FOUR_T = PlanShape("gpt-24t", 256, 88064, 688, 128, 352256, 50257, 2048, n_kv_heads=688, batch_size=1024)
PLANNING_SHAPES["gpt-1t"] = (ONE_T, "U: a GPT-2-style shape of 1T parameters (Sandia's shape is unpublished)")
PLANNING_SHAPES["gpt-24t"] = (TWENTY_FOUR_T, "U: a GPT-2-style shape of 24T parameters (the MemoryX pairing)")


def row(outcome: str, published, simulated, source: str, unit: str = "", distance: str | None = None) -> dict:
    """One table row; distance is simulated / published - 1 when both are numbers, else as given."""
    if distance is None and isinstance(published, (int, float)) and isinstance(simulated, (int, float)):
        distance = f"{simulated / published - 1:+.0%}"
    return {"outcome": outcome, "published": published, "simulated": simulated, "unit": unit,
            "distance": distance or "", "source": source}
