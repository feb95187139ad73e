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


def plot_story_attention(model, data, vocab, question: int, ax=None):
    """Chapter 4: the attention of every hop over one story's sentences (the paper's Table/Fig. style).

    Rows are the story's sentences (oldest first; supporting facts marked ★), columns the hops; the title
    holds the question, the model's answer and the true one.

    Args:
        model: a one-copy ``MemN2N``; data: ``BabiTensors``; vocab: its ``Vocab``; question: row of ``data``.

    Returns:
        (predicted answer, attention [n_sentences, H] as a NumPy array, the matplotlib Axes).
    """
    import matplotlib.pyplot as plt

    one = data.subset(slice(question, question + 1))
    with torch.no_grad():
        out = model(one.stories, one.story_mask, one.queries)
    n = int(one.story_mask[0].sum())
    attention = out.attention[0, :, :n].T.numpy()  # [n, H]
    hops = attention.shape[1]
    sentences = [" ".join(vocab.decode(one.stories[0, i])) for i in range(n)]
    marks = ["★ " if bool(one.supporting[0, i]) else "" for i in range(n)]
    answer = vocab.words[int(out.logits[0].argmax())]
    truth = vocab.words[int(one.answers[0])]
    if ax is None:
        _, ax = plt.subplots(figsize=(2.6 + 1.0 * hops, 0.3 * n + 1.2))
    ax.imshow(attention, aspect="auto", cmap="Blues", vmin=0, vmax=1)
    ax.set_yticks(range(n))
    ax.set_yticklabels([m + s for m, s in zip(marks, sentences)], fontsize=8)
    ax.set_xticks(range(hops))
    ax.set_xticklabels([f"hop {k + 1}" for k in range(hops)], fontsize=8)
    for i in range(n):
        for k in range(hops):
            if attention[i, k] >= 0.05:
                ax.text(k, i, f"{attention[i, k]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if attention[i, k] > 0.6 else "black")
    ok = "✓" if answer == truth else "✗"
    ax.set_title(f"{' '.join(vocab.decode(one.queries[0]))}?  model: {answer}, truth: {truth} {ok}", fontsize=9)
    return answer, attention, ax


def memn2n_story_explorer(model, data, vocab, start: int = 0):
    """Chapter 4: pick a bAbI test question; see the story, the model's answer and each hop's attention
    over the sentences, with the supporting facts marked (★).

    Args:
        model: a one-copy ``mem_tutorial.models.memn2n.MemN2N``.
        data: ``BabiTensors`` (e.g. ``load_babi(...).test``).
        vocab: the ``Vocab`` the model was trained with.
        start: the question shown first.

    Returns:
        an ``ipywidgets.VBox``; its ``.draw(index)`` attribute redraws for one row of ``data`` and returns
        (answer, attention) (usable headless, e.g. in tests).
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    from mem_tutorial.data.babi import TASK_NAMES

    tasks = sorted(set(data.tasks.tolist()))
    task = widgets.Dropdown(options=[(f"{t}: {TASK_NAMES.get(t, '?')}", t) for t in tasks],
                            value=int(data.tasks[start]), description="task")
    index = widgets.IntSlider(value=0, min=0, max=0, description="question")
    out = widgets.Output()

    def rows_of(t):
        return (data.tasks == t).nonzero().flatten().tolist()

    def draw(*_, question: int | None = None):
        rows = rows_of(task.value)
        index.max = max(len(rows) - 1, 0)
        q = question if question is not None else rows[min(index.value, len(rows) - 1)]
        with out:
            out.clear_output(wait=True)
            answer, attention, ax = plot_story_attention(model, data, vocab, q)
            ax.figure.tight_layout()
            plt.show()
        return answer, attention

    task.observe(lambda change: (setattr(index, "value", 0), draw()), names="value")
    index.observe(draw, names="value")
    box = widgets.VBox([widgets.HBox([task, index]), out])
    box.draw = lambda q: draw(question=q)
    draw(question=start)
    return box
