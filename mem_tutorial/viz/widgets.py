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


def ntm_addressing_stages(memory: torch.Tensor, key: torch.Tensor, beta: float, gate: float, shift_dist,
                          gamma: float, prev_w: torch.Tensor) -> dict[str, torch.Tensor]:
    """The four weightings of the NTM addressing pipeline for one head (Graves et al. 2014, Figure 2, Eq. 5-9).

    Args:
        memory: [N, W]; key: [W]; prev_w: [N]; shift_dist: [S] (offsets -(S//2)..S//2); beta, gate, gamma: floats.

    Returns:
        ``{"content": w^c, "gated": w^g, "shifted": w~, "sharpened": w}``, each [N].
    """
    from mem_tutorial.memory import content_weighting, interpolate, sharpen, shift

    dt = memory.dtype
    s = torch.as_tensor(shift_dist, dtype=dt)
    wc = content_weighting(memory[None], key[None], torch.tensor([beta], dtype=dt))
    wg = interpolate(wc, prev_w[None].to(dt), torch.tensor([gate], dtype=dt))
    ws = shift(wg, s[None])
    w = sharpen(ws, torch.tensor([gamma], dtype=dt))
    return {"content": wc[0], "gated": wg[0], "shifted": ws[0], "sharpened": w[0]}


def ntm_addressing_explorer(memory: torch.Tensor | None = None, prev_slot: int = 3, key_slot: int = 10,
                            seed: int = 0):
    """Chapter 2: sliders for β, g, the shift offset (and its spread) and γ; bar plots of each stage's weighting.

    The previous weighting is a one-hot at ``prev_slot``; the key is a noisy copy of row ``key_slot``. Move g to
    switch between content (g = 1) and location (g = 0) addressing, shift the focus by -1/0/+1 slots, blur the
    shift and sharpen it back with γ.

    Args:
        memory: [N, W] (default: a random 16 x 6 memory from ``seed``).

    Returns:
        an ``ipywidgets.VBox``; its ``.stages()`` attribute returns the current stages (for headless use).
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    gen = torch.Generator().manual_seed(seed)
    if memory is None:
        memory = torch.randn(16, 6, generator=gen, dtype=torch.float64)
    if memory.dim() != 2:
        raise ValueError(f"memory: expected shape [N, W], got {list(memory.shape)}")
    n_slots = memory.shape[0]
    key = memory[key_slot % n_slots] + 0.3 * torch.randn(memory.shape[1], generator=gen, dtype=memory.dtype)
    prev = torch.zeros(n_slots, dtype=memory.dtype)
    prev[prev_slot % n_slots] = 1.0

    beta = widgets.FloatLogSlider(value=10.0, base=10, min=-1, max=2, step=0.05, description="β strength")
    gate = widgets.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05, description="g gate")
    offset = widgets.IntSlider(value=1, min=-1, max=1, description="shift")
    spread = widgets.FloatSlider(value=0.2, min=0.0, max=0.66, step=0.02, description="shift blur")
    gamma = widgets.FloatSlider(value=1.0, min=1.0, max=20.0, step=0.5, description="γ sharpen")
    out = widgets.Output()

    def shift_dist() -> list[float]:
        s = [spread.value / 2] * 3
        s[offset.value + 1] = 1.0 - spread.value
        return s

    def stages() -> dict[str, torch.Tensor]:
        return ntm_addressing_stages(memory, key, beta.value, gate.value, shift_dist(), gamma.value, prev)

    def draw(*_):
        st = stages()
        with out:
            out.clear_output(wait=True)
            fig, axes = plt.subplots(1, 5, figsize=(14, 2.4), sharey=True)
            panels = [("previous w_{t-1}", prev), ("content w^c (β)", st["content"]), ("gated w^g (g)", st["gated"]),
                      ("shifted w~ (s)", st["shifted"]), ("sharpened w (γ)", st["sharpened"])]
            for ax, (title, w) in zip(axes, panels):
                ax.bar(range(n_slots), w.numpy(), color="tab:blue")
                ax.set_title(title, fontsize=9)
                ax.set_xlabel("slot")
                ax.set_ylim(0, 1)
            fig.tight_layout()
            plt.show()

    for w in (beta, gate, offset, spread, gamma):
        w.observe(draw, names="value")
    draw()
    box = widgets.VBox([widgets.HBox([beta, gate, offset]), widgets.HBox([spread, gamma]), out])
    box.stages = stages
    return box


def dnc_memory_stepper(traces, inputs=None, targets=None, outputs=None, batch_index: int = 0):
    """Chapter 3: step through a trained DNC's memory over time with a slider.

    For the chosen step t it shows the memory M_t, the write weighting with the allocation weighting, each read
    head's weighting, the usage before/after, and the gates (allocation, write, free) and read modes.

    Args:
        traces: the list of ``StepTrace`` returned by ``DNC.forward(x, trace=True)`` (one per step).
        inputs, targets, outputs: optional [B, T, *] tensors shown as the current step's input/target/output.
        batch_index: which sequence of the batch to show.

    Returns:
        an ``ipywidgets.VBox`` (slider + output area); its ``draw(t)`` attribute redraws step t (headless use).
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    if not traces:
        raise ValueError("traces: expected a non-empty list of StepTrace (run the DNC with trace=True)")
    b = batch_index
    T = len(traces)
    step = widgets.IntSlider(value=0, min=0, max=T - 1, description="step t", continuous_update=False)
    out = widgets.Output()

    def _row(x):
        return "".join(str(int(v > 0.5)) for v in x.tolist())

    def draw(t=None, *_):
        t = step.value if t is None or not isinstance(t, int) else t
        tr = traces[t]
        s = type(tr.state)(*(v.detach() for v in tr.state))
        it = type(tr.interface)(*(v.detach() for v in tr.interface))
        with out:
            out.clear_output(wait=True)
            fig, axes = plt.subplots(1, 4, figsize=(14, 3), gridspec_kw={"width_ratios": [1.2, 1, 1, 1]})
            mem = s.memory[b].detach().cpu()
            axes[0].imshow(mem.numpy(), aspect="auto", cmap="viridis", interpolation="nearest")
            axes[0].set_title(f"memory M_t (t = {t})")
            axes[0].set_xlabel("word position")
            axes[0].set_ylabel("slot")
            n = mem.shape[0]
            x = torch.arange(n)
            axes[1].bar(x - 0.2, s.write_weights[b].detach().cpu().numpy(), width=0.4, label="write w^w")
            axes[1].bar(x + 0.2, tr.allocation[b].detach().cpu().numpy(), width=0.4, label="allocation a")
            axes[1].set_ylim(0, 1)
            axes[1].set_title("write")
            axes[1].legend(fontsize=7)
            rw = s.read_weights[b].detach().cpu()
            for r in range(rw.shape[0]):
                axes[2].bar(x + (r - (rw.shape[0] - 1) / 2) * 0.8 / rw.shape[0], rw[r].numpy(),
                            width=0.8 / rw.shape[0], label=f"read head {r}")
            axes[2].set_ylim(0, 1)
            axes[2].set_title("read weightings")
            axes[2].legend(fontsize=7)
            axes[3].bar(x, s.usage[b].detach().cpu().numpy(), color="tab:gray")
            axes[3].set_ylim(0, 1)
            axes[3].set_title("usage u_t")
            for ax in axes[1:]:
                ax.set_xlabel("slot")
            fig.tight_layout()
            plt.show()
            modes = it.read_modes[b].detach().cpu()
            print(f"gates: allocation {float(it.alloc_gate[b]):.2f}  write {float(it.write_gate[b]):.2f}  "
                  f"free {[round(float(f), 2) for f in it.free_gates[b]]}")
            print("read modes (backward, content, forward): "
                  + "  ".join(f"head {r}: {[round(float(v), 2) for v in modes[r]]}" for r in range(modes.shape[0])))
            if inputs is not None:
                line = f"input {_row(inputs[b, t])}"
                if targets is not None:
                    line += f"   target {_row(targets[b, t])}"
                if outputs is not None:
                    line += f"   output {_row(torch.sigmoid(outputs[b, t]))}"
                print(line)

    step.observe(lambda change: draw(change["new"]), names="value")
    draw(0)
    box = widgets.VBox([step, out])
    box.draw = draw
    return box


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
