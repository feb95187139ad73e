"""ipywidgets explorers: sliders on the left, the memory at work on the right.

Each function returns the widget (display it as the last expression of a cell). They also work without a
browser: ``explorer.update(...)``-style callbacks are plain functions, so tests can drive them headless.
"""

from __future__ import annotations

import torch


def content_addressing_explorer(memory: torch.Tensor, key_slots: list[int] | None = None, noise: float = 0.3,
                                seed: int = 0):
    """Chapter 1: pick a key (a noisy copy of one memory row) and a key strength β; see the content weighting
    over the slots and the read vector next to the true row.

    Args:
        memory: [N, W] one memory matrix.
        key_slots: slots offered as key targets (default: all).
        noise: standard deviation of the noise added to the chosen row to make the key.
        seed: seed for the key noise.

    Returns:
        an ``ipywidgets.VBox`` with sliders and an output area.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    from mem_tutorial.memory import content_weighting, read

    if memory.dim() != 2:
        raise ValueError(f"memory: expected shape [N, W], got {list(memory.shape)}")
    n_slots = memory.shape[0]
    slots = key_slots or list(range(n_slots))
    gen = torch.Generator().manual_seed(seed)
    noise_table = noise * torch.randn(n_slots, memory.shape[1], generator=gen, dtype=memory.dtype)

    slot = widgets.Dropdown(options=slots, value=slots[0], description="key ≈ row")
    beta = widgets.FloatLogSlider(value=5.0, base=10, min=-1, max=2, step=0.05, description="β (strength)")
    out = widgets.Output()

    def draw(*_):
        key = memory[slot.value] + noise_table[slot.value]
        w = content_weighting(memory[None], key[None], torch.tensor([beta.value], dtype=memory.dtype))[0]
        r = read(memory[None], w[None])[0]
        with out:
            out.clear_output(wait=True)
            fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 2.8))
            ax1.bar(range(n_slots), w.numpy(), color="tab:blue")
            ax1.set_ylim(0, 1)
            ax1.set_xlabel("slot")
            ax1.set_title(f"content weighting, β = {beta.value:.3g}")
            ax2.plot(memory[slot.value].numpy(), "o-", label=f"row {slot.value}")
            ax2.plot(r.numpy(), "s--", label="read vector")
            ax2.set_xlabel("word position")
            ax2.set_title("read vs the row the key came from")
            ax2.legend(fontsize=8)
            fig.tight_layout()
            plt.show()

    slot.observe(draw, names="value")
    beta.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox([slot, beta]), out])


def kv_memnn_explorer(model, reader, kb, questions: list[str] | None = None, top_keys: int = 8):
    """Chapter 5: type or pick a question; see the memories key hashing selected, each hop's key attention
    over them and the model's answers.

    Args:
        model: a trained ``mem_tutorial.models.kvmemnn.KVMemNN``.
        reader: the ``KVReader`` over the memories to read (its KB may be an edited one).
        kb: the ``MovieKB`` used to tokenise questions (entity linking).
        questions: questions offered in the drop-down (any text can be typed).
        top_keys: how many of the most attended keys each hop's chart shows.

    Returns:
        an ``ipywidgets.VBox``; its ``ask(text)`` method answers a question headless and returns the
        ``mem_tutorial.models.kvmemnn.answer`` dict (used by tests).
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display  # noqa: F401

    from mem_tutorial.data.moviekb import tokenize
    from mem_tutorial.models.kvmemnn import answer

    options = list(questions or [])
    box_q = widgets.Combobox(value=options[0] if options else "", options=options, placeholder="who directed ...?",
                             description="question", ensure_option=False, layout=widgets.Layout(width="60%"))
    out = widgets.Output()

    def key_text(i: int) -> str:
        m = reader.memories[i]
        key = " ".join(m.key) + (f" [centre: {' '.join(m.center)}]" if m.center else "")
        return f"{key[:48]} -> {' '.join(m.value)[:24]}"

    def ask(text: str) -> dict:
        tokens = tokenize(text, kb)
        result = answer(model, reader, tokens)
        result["tokens"] = tokens
        return result

    def draw(*_):
        text = box_q.value.strip()
        with out:
            out.clear_output(wait=True)
            if not text:
                return
            result = ask(text)
            ids, weights = result["memories"], result["weights"]
            print("tokens:", result["tokens"])
            print(f"key hashing kept {len(ids)} of {len(reader.memories)} memories")
            if not ids:
                print("no memory shares a rare word with the question: nothing to read")
                return
            hops = weights.shape[0]
            fig, axes = plt.subplots(1, hops, figsize=(5.5 * hops, 0.35 * min(top_keys, len(ids)) + 1.2))
            axes = [axes] if hops == 1 else list(axes)
            for h, ax in enumerate(axes):
                w = weights[h]
                order = w.argsort(descending=True)[:top_keys].flip(0)
                ax.barh(range(len(order)), w[order].numpy(), color="tab:orange")
                ax.set_yticks(range(len(order)), [key_text(ids[int(i)]) for i in order], fontsize=7)
                ax.set_xlim(0, 1)
                ax.set_title(f"hop {h + 1}: key addressing p_h", fontsize=9)
            fig.tight_layout()
            plt.show()
            print("answers:", ", ".join(f"{a} ({p:.2f})" for a, p in result["answers"]))

    box_q.observe(draw, names="value")
    draw()
    box = widgets.VBox([box_q, out])
    box.ask = ask
    return box
