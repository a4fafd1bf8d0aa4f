# %% [markdown]
# # Exercise 10 · Your own Gemma
#
# Time to put your pieces together into a model of your own and load a real checkpoint layout into it. Bring
# into the cell below your solutions from the earlier exercises: RMSNorm (03), RoPE (04), the attention module
# (05, task 5), GeGLU (06) and the decoder block and forward pass (07). `python exercises/keep.py` collects your
# finished solution cells into `exercises/my_gemma.py`; `%load my_gemma.py` at the top of the cell pastes them in
# (exercises 07 and 08 used minigemma's parts: replace those by yours). Then write the loader that maps the
# checkpoint's tensor names onto your modules. While this notebook is graded, minigemma's own model modules cannot
# be imported: every number your model computes must come from your code.
#
# After the task, run the check cell below it. Do not edit the check cells.

# %%
import math

import torch

from minigemma.grading import check_own_gemma1, check_own_gemma3

# %% [markdown]
# ## Task 1 · Load a Gemma 1 checkpoint and match transformers (6 points)
#
# Write `load_gemma1(config, state)` returning your model with the checkpoint's weights loaded; calling it on ids
# `(batch, seq)` must return logits `(batch, seq, vocab)`. `config` has the sizes (`vocab_size`, `hidden_size`,
# `intermediate_size`, `num_layers`, `num_heads`, `num_kv_heads`, `head_dim`, `rope_theta`, `rms_norm_eps`);
# `state` is a dict of tensors named as in Hugging Face's layout: `model.embed_tokens.weight`,
# `model.layers.{i}.input_layernorm.weight`, `model.layers.{i}.self_attn.{q,k,v,o}_proj.weight`,
# `model.layers.{i}.post_attention_layernorm.weight`, `model.layers.{i}.mlp.{gate,up,down}_proj.weight`,
# `model.norm.weight` (the output head is tied to the embedding). The check writes a tiny checkpoint with random
# weights and compares your logits with transformers' on the same ids.

# %% solution own-gemma1
### BEGIN SOLUTION
def rms_norm(x, weight, eps):                                         # (..., hidden), Gemma's (1 + weight)
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps) * (1.0 + weight.float())).to(x.dtype)


def rope(x, cos, sin):                                                # x (batch, heads, seq, head_dim)
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class Block(torch.nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        hidden, hd = config.hidden_size, config.head_dim
        linear = lambda n_in, n_out: torch.nn.Linear(n_in, n_out, bias=False)   # noqa: E731
        self.q_proj, self.o_proj = linear(hidden, config.num_heads * hd), linear(config.num_heads * hd, hidden)
        self.k_proj, self.v_proj = linear(hidden, config.num_kv_heads * hd), linear(hidden, config.num_kv_heads * hd)
        self.gate_proj = linear(hidden, config.intermediate_size)
        self.up_proj = linear(hidden, config.intermediate_size)
        self.down_proj = linear(config.intermediate_size, hidden)
        self.attn_norm = torch.nn.Parameter(torch.zeros(hidden))
        self.mlp_norm = torch.nn.Parameter(torch.zeros(hidden))

    def attention(self, x, cos, sin):
        batch, seq, _ = x.shape
        c = self.config
        heads = lambda t, n: t.view(batch, seq, n, c.head_dim).transpose(1, 2)   # noqa: E731
        q = rope(heads(self.q_proj(x), c.num_heads), cos, sin)
        k = rope(heads(self.k_proj(x), c.num_kv_heads), cos, sin)
        v = heads(self.v_proj(x), c.num_kv_heads)
        group = c.num_heads // c.num_kv_heads
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(c.head_dim)       # (batch, heads, seq, seq)
        scores = scores.masked_fill(~torch.ones(seq, seq, dtype=torch.bool).tril(), float("-inf"))
        out = scores.softmax(dim=-1) @ v                               # (batch, heads, seq, head_dim)
        return self.o_proj(out.transpose(1, 2).reshape(batch, seq, -1))

    def forward(self, h, cos, sin):
        eps = self.config.rms_norm_eps
        h = h + self.attention(rms_norm(h, self.attn_norm, eps), cos, sin)
        x = rms_norm(h, self.mlp_norm, eps)
        gelu = torch.nn.functional.gelu(self.gate_proj(x), approximate="tanh")
        return h + self.down_proj(gelu * self.up_proj(x))


class MyGemma(torch.nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embed = torch.nn.Parameter(torch.zeros(config.vocab_size, config.hidden_size))
        self.layers = torch.nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.norm = torch.nn.Parameter(torch.zeros(config.hidden_size))

    def forward(self, ids):                                            # (batch, seq) -> (batch, seq, vocab)
        c = self.config
        inv_freq = 1.0 / c.rope_theta ** (torch.arange(0, c.head_dim, 2).float() / c.head_dim)
        angles = torch.arange(ids.shape[1]).float()[:, None] * inv_freq[None, :]   # (seq, head_dim // 2)
        h = self.embed[ids] * torch.tensor(c.hidden_size ** 0.5, dtype=self.embed.dtype)
        for block in self.layers:
            h = block(h, angles.cos(), angles.sin())
        return rms_norm(h, self.norm, c.rms_norm_eps) @ self.embed.T


def load_gemma1(config, state):
    model = MyGemma(config)
    names = {"embed": "model.embed_tokens.weight", "norm": "model.norm.weight"}
    for i in range(config.num_layers):
        hf = f"model.layers.{i}."
        names.update({f"layers.{i}.attn_norm": hf + "input_layernorm.weight",
                      f"layers.{i}.mlp_norm": hf + "post_attention_layernorm.weight"})
        names.update({f"layers.{i}.{p}.weight": hf + f"self_attn.{p}.weight" for p in ("q_proj", "k_proj",
                                                                                       "v_proj", "o_proj")})
        names.update({f"layers.{i}.{p}.weight": hf + f"mlp.{p}.weight" for p in ("gate_proj", "up_proj",
                                                                                "down_proj")})
    model.load_state_dict({mine: state[theirs] for mine, theirs in names.items()})
    return model.eval()
### END SOLUTION

# %% grade own-gemma1 points=6
check_own_gemma1(load_gemma1)

# %% [markdown]
# ## Task 2 · Extend it to Gemma 3 and continue a prompt as the real 270M does (6 points)
#
# Lesson 10 showed what Gemma 3 changed. Extend your model with those changes (subclass or copy your Task 1
# classes, as you prefer) and write `load_gemma3(config, state)`. The check reads the real Gemma 3 270M (the GGUF
# of the `gguf` extra) with minigemma's reader, dequantized to float32, and hands you its tensors under Hugging
# Face's Gemma 3 names: Task 1's, plus `model.layers.{i}.self_attn.{q,k}_norm.weight`,
# `model.layers.{i}.pre_feedforward_layernorm.weight` and `model.layers.{i}.post_feedforward_layernorm.weight`
# (in Gemma 3, `post_attention_layernorm` really comes *after* attention). `config` also has `sliding_window`,
# `layer_types` (`"local"` or `"global"` per layer), `rope_local_theta`, `rope_scaling_factor` and
# `query_pre_attn_scalar`. The check then feeds your model a prompt, takes the arg-max of the last position,
# appends it, and repeats: your tokens must be minigemma's greedy continuation. Your model is called on the whole
# sequence each time, so it needs no KV cache. Think about which numbers Gemma 3 no longer takes from `head_dim`,
# and which layers see the whole prompt.

# %% solution own-gemma3
### BEGIN SOLUTION
class Block3(Block):
    """Gemma 3's block: QK-norm, its own attention scale, and a norm after each sub-layer too."""

    def __init__(self, config):
        super().__init__(config)
        self.q_norm = torch.nn.Parameter(torch.zeros(config.head_dim))
        self.k_norm = torch.nn.Parameter(torch.zeros(config.head_dim))
        self.post_attn_norm = torch.nn.Parameter(torch.zeros(config.hidden_size))
        self.post_mlp_norm = torch.nn.Parameter(torch.zeros(config.hidden_size))

    def attention(self, x, cos, sin, mask):
        batch, seq, _ = x.shape
        c = self.config
        heads = lambda t, n: t.view(batch, seq, n, c.head_dim).transpose(1, 2)   # noqa: E731
        q = rope(rms_norm(heads(self.q_proj(x), c.num_heads), self.q_norm, c.rms_norm_eps), cos, sin)
        k = rope(rms_norm(heads(self.k_proj(x), c.num_kv_heads), self.k_norm, c.rms_norm_eps), cos, sin)
        v = heads(self.v_proj(x), c.num_kv_heads)
        group = c.num_heads // c.num_kv_heads
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        scores = (q @ k.transpose(-1, -2)) * c.query_pre_attn_scalar ** -0.5   # (batch, heads, seq, seq)
        out = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1) @ v
        return self.o_proj(out.transpose(1, 2).reshape(batch, seq, -1))

    def forward(self, h, cos, sin, mask):
        eps = self.config.rms_norm_eps
        h = h + rms_norm(self.attention(rms_norm(h, self.attn_norm, eps), cos, sin, mask), self.post_attn_norm, eps)
        x = rms_norm(h, self.mlp_norm, eps)
        gelu = torch.nn.functional.gelu(self.gate_proj(x), approximate="tanh")
        return h + rms_norm(self.down_proj(gelu * self.up_proj(x)), self.post_mlp_norm, eps)


class MyGemma3(MyGemma):
    def __init__(self, config):
        super().__init__(config)
        self.layers = torch.nn.ModuleList(Block3(config) for _ in range(config.num_layers))

    def rope_table(self, positions, theta):
        hd = self.config.head_dim
        inv_freq = 1.0 / theta ** (torch.arange(0, hd, 2).float() / hd)
        angles = positions[:, None] * inv_freq[None, :]                # (seq, head_dim // 2)
        return angles.cos(), angles.sin()

    def forward(self, ids):                                            # (batch, seq) -> (batch, seq, vocab)
        c, seq = self.config, ids.shape[1]
        positions = torch.arange(seq).float()
        causal = torch.ones(seq, seq, dtype=torch.bool).tril()
        local_mask = causal & (positions[:, None] - positions[None, :] < c.sliding_window)
        local = (*self.rope_table(positions, c.rope_local_theta), local_mask)
        global_ = (*self.rope_table(positions / c.rope_scaling_factor, c.rope_theta), causal)
        h = self.embed[ids] * torch.tensor(c.hidden_size ** 0.5, dtype=self.embed.dtype)
        for block, kind in zip(self.layers, c.layer_types):
            h = block(h, *(local if kind == "local" else global_))
        return rms_norm(h, self.norm, c.rms_norm_eps) @ self.embed.T


def load_gemma3(config, state):
    model = MyGemma3(config)
    renamed = {"input_layernorm": "attn_norm", "post_attention_layernorm": "post_attn_norm",
               "pre_feedforward_layernorm": "mlp_norm", "post_feedforward_layernorm": "post_mlp_norm",
               "self_attn.q_norm": "q_norm", "self_attn.k_norm": "k_norm"}
    mine = {"model.embed_tokens.weight": "embed", "model.norm.weight": "norm"}
    for name in state:
        if name.startswith("model.layers."):
            layer, part = name.removeprefix("model.layers.").removesuffix(".weight").split(".", 1)
            if part in renamed:
                mine[name] = f"layers.{layer}.{renamed[part]}"
            else:
                mine[name] = f"layers.{layer}.{part.split('.')[-1]}.weight"
    model.load_state_dict({mine[name]: tensor for name, tensor in state.items()})
    return model.eval()
### END SOLUTION

# %% grade own-gemma3 points=6
check_own_gemma3(load_gemma3)
