"""Well-known PyTorch scripts run on dualgraph with only their imports changed.

Each script below is a condensed copy of a public one (the PyTorch MNIST example, nanoGPT's model
file, makemore's RNN/GRU cells and training loop, micrograd's autograd tests), written against
`torch` exactly as its authors did. `_dualgraph_source` rewrites the import lines and nothing else.
With torch installed, the same text runs on both and the numbers are compared (the dualgraph model
starts from the torch model's state_dict); without it, each script still has to run and learn.
"""
import re

import numpy as np
import pytest

IMPORTS = [
    (r"^import torch$", "import dualgraph as torch"),
    (r"^import torch\.nn as nn$", "import dualgraph.nn as nn"),
    (r"^import torch\.nn\.functional as F$", "import dualgraph.nn.functional as F"),
    (r"^import torch\.optim as optim$", "import dualgraph.optim as optim"),
    (r"^from torch\.optim\.lr_scheduler import (.*)$", r"from dualgraph.optim.lr_scheduler import \1"),
    (r"^from torch\.utils\.data import (.*)$", r"from dualgraph.utils.data import \1"),
    (r"^from torch\.utils\.data\.dataloader import (.*)$", r"from dualgraph.utils.data.dataloader import \1"),
    (r"^from torch\.nn import functional as F$", "from dualgraph.nn import functional as F"),
]


def _dualgraph_source(src):
    out = []
    for line in src.splitlines():
        for pattern, repl in IMPORTS:
            if re.match(pattern, line):
                line = re.sub(pattern, repl, line)
                break
        else:
            assert not re.match(r"^(import|from) torch", line), f"unmapped import: {line}"
        out.append(line)
    return "\n".join(out)


def _run(src, **env):
    namespace = dict(env)
    exec(compile(src, "<script>", "exec"), namespace)
    return namespace


def _torch_or_none():
    try:
        import torch
    except ModuleNotFoundError:
        return None
    return torch


def _state_as_numpy(model):
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


# ---- the PyTorch MNIST example (pytorch/examples, mnist/main.py), on random digits ------------------

MNIST = '''
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.optim.lr_scheduler import StepLR
from torch.utils.data import DataLoader, TensorDataset


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(P_DROP1)
        self.dropout2 = nn.Dropout(P_DROP2)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = F.relu(x)
        x = self.conv2(x)
        x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = F.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        output = F.log_softmax(x, dim=1)
        return output


def train(model, device, train_loader, optimizer, epoch, losses):
    model.train()
    for batch_idx, (data, target) in enumerate(train_loader):
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model(data)
        loss = F.nll_loss(output, target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())


def test(model, device, test_loader):
    model.eval()
    test_loss = 0
    correct = 0
    with torch.no_grad():
        for data, target in test_loader:
            data, target = data.to(device), target.to(device)
            output = model(data)
            test_loss += F.nll_loss(output, target, reduction='sum').item()
            pred = output.argmax(dim=1, keepdim=True)
            correct += pred.eq(target.view_as(pred)).sum().item()
    test_loss /= len(test_loader.dataset)
    return test_loss, correct


def main(state=None, epochs=2):
    use_cuda = torch.cuda.is_available()
    use_mps = torch.backends.mps.is_available()
    torch.manual_seed(1)
    if use_cuda:
        device = torch.device("cuda")
    elif use_mps:
        device = torch.device("mps")
    else:
        device = torch.device("cpu")
    train_kwargs = {'batch_size': 16}
    test_kwargs = {'batch_size': 32}
    if use_cuda:
        cuda_kwargs = {'num_workers': 1, 'pin_memory': True, 'shuffle': True}
        train_kwargs.update(cuda_kwargs)
        test_kwargs.update(cuda_kwargs)
    images = torch.tensor(IMAGES)
    labels = torch.tensor(LABELS)
    dataset1 = TensorDataset(images[:48], labels[:48])
    dataset2 = TensorDataset(images[48:], labels[48:])
    train_loader = DataLoader(dataset1, **train_kwargs)
    test_loader = DataLoader(dataset2, **test_kwargs)
    model = Net().to(device)
    if state is not None:
        model.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    optimizer = optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = StepLR(optimizer, step_size=1, gamma=0.7)
    losses, lrs = [], []
    for epoch in range(1, epochs + 1):
        train(model, device, train_loader, optimizer, epoch, losses)
        test_loss, correct = test(model, device, test_loader)
        lrs.append(scheduler.get_last_lr()[0])
        scheduler.step()
    torch.save(model.state_dict(), SAVE_PATH)
    return model, losses, lrs, test_loss, correct
'''


def _digits(n=64, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.normal(0, 0.3, (n, 1, 28, 28)).astype(np.float32)
    for i, c in enumerate(labels):  # a learnable mark: a bright row whose position is the class
        images[i, 0, 2 + 2 * c, 4:24] += 2.0
    return images, labels.astype(np.int64)


def test_mnist_example_matches_torch(tmp_path):
    torch = pytest.importorskip("torch")
    images, labels = _digits()
    env = dict(IMAGES=images, LABELS=labels, P_DROP1=0.0, P_DROP2=0.0)
    ref = _run(MNIST, SAVE_PATH=str(tmp_path / "ref.pt"), **env)
    torch.manual_seed(0)
    ref_model = ref["Net"]()
    state = _state_as_numpy(ref_model)
    _, ref_losses, ref_lrs, ref_test, ref_correct = ref["main"](state)
    ours = _run(_dualgraph_source(MNIST), SAVE_PATH=str(tmp_path / "model.pt"), **env)
    model, losses, lrs, test_loss, correct = ours["main"](state)
    np.testing.assert_allclose(losses, ref_losses, rtol=2e-3, atol=2e-4)
    np.testing.assert_allclose(lrs, ref_lrs, rtol=1e-12)
    np.testing.assert_allclose(test_loss, ref_test, rtol=2e-3)
    assert correct == ref_correct


def test_mnist_example_learns_with_dropout(tmp_path):
    import dualgraph as dg

    images, labels = _digits()
    path = tmp_path / "mnist_cnn.pt"
    ns = _run(_dualgraph_source(MNIST), IMAGES=images, LABELS=labels, P_DROP1=0.25, P_DROP2=0.5,
              SAVE_PATH=str(path))
    model, losses, lrs, test_loss, correct = ns["main"](epochs=3)
    assert lrs == pytest.approx([1.0, 0.7, 0.49])
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])
    restored = ns["Net"]()
    restored.load_state_dict(dg.load(str(path)))
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(restored.state_dict()[k].numpy(), v.numpy())


# ---- nanoGPT's model file (model.py), a small config ------------------------------------------------

NANOGPT = '''
import math
import inspect
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F


class LayerNorm(nn.Module):
    """ LayerNorm but with an optional bias. PyTorch doesn't support simply bias=False """

    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, input):
        return F.layer_norm(input, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):

    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.flash = hasattr(torch.nn.functional, 'scaled_dot_product_attention') and FLASH
        if not self.flash:
            self.register_buffer("bias", torch.tril(torch.ones(config.block_size, config.block_size))
                                        .view(1, 1, config.block_size, config.block_size))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v  = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if self.flash:
            y = torch.nn.functional.scaled_dot_product_attention(
                q, k, v, attn_mask=None, dropout_p=self.dropout if self.training else 0, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(self.bias[:,:,:T,:T] == 0, float('-inf'))
            att = F.softmax(att, dim=-1)
            att = self.attn_dropout(att)
            y = att @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        y = self.resid_dropout(self.c_proj(y))
        return y


class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.c_fc    = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu    = nn.GELU()
        self.c_proj  = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        x = self.c_fc(x)
        x = self.gelu(x)
        x = self.c_proj(x)
        x = self.dropout(x)
        return x


class Block(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


@dataclass
class GPTConfig:
    block_size: int = 16
    vocab_size: int = 27
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 32
    dropout: float = 0.0
    bias: bool = True


class GPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte = nn.Embedding(config.vocab_size, config.n_embd),
            wpe = nn.Embedding(config.block_size, config.n_embd),
            drop = nn.Dropout(config.dropout),
            h = nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f = LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():
            if pn.endswith('c_proj.weight'):
                torch.nn.init.normal_(p, mean=0.0, std=0.02/math.sqrt(2 * config.n_layer))

    def get_num_params(self, non_embedding=True):
        n_params = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n_params -= self.transformer.wpe.weight.numel()
        return n_params

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets=None):
        device = idx.device
        b, t = idx.size()
        assert t <= self.config.block_size, f"Cannot forward sequence of length {t}"
        pos = torch.arange(0, t, dtype=torch.long, device=device)
        tok_emb = self.transformer.wte(idx)
        pos_emb = self.transformer.wpe(pos)
        x = self.transformer.drop(tok_emb + pos_emb)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        if targets is not None:
            logits = self.lm_head(x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        else:
            logits = self.lm_head(x[:, [-1], :])
            loss = None
        return logits, loss

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type):
        param_dict = {pn: p for pn, p in self.named_parameters()}
        param_dict = {pn: p for pn, p in param_dict.items() if p.requires_grad}
        decay_params = [p for n, p in param_dict.items() if p.dim() >= 2]
        nodecay_params = [p for n, p in param_dict.items() if p.dim() < 2]
        optim_groups = [
            {'params': decay_params, 'weight_decay': weight_decay},
            {'params': nodecay_params, 'weight_decay': 0.0}
        ]
        fused_available = 'fused' in inspect.signature(torch.optim.AdamW).parameters
        use_fused = fused_available and device_type == 'cuda'
        extra_args = dict(fused=True) if use_fused else dict()
        optimizer = torch.optim.AdamW(optim_groups, lr=learning_rate, betas=betas, **extra_args)
        return optimizer

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        for _ in range(max_new_tokens):
            idx_cond = idx if idx.size(1) <= self.config.block_size else idx[:, -self.config.block_size:]
            logits, _ = self(idx_cond)
            logits = logits[:, -1, :] / temperature
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float('Inf')
            probs = F.softmax(logits, dim=-1)
            idx_next = torch.multinomial(probs, num_samples=1)
            idx = torch.cat((idx, idx_next), dim=1)
        return idx


def train(state=None, steps=4):
    torch.manual_seed(1337)
    model = GPT(GPTConfig())
    if state is not None:
        model.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    optimizer = model.configure_optimizers(0.1, 1e-3, (0.9, 0.95), 'cpu')
    x = torch.tensor(TOKENS[:, :-1])
    y = torch.tensor(TOKENS[:, 1:])
    losses = []
    for _ in range(steps):
        logits, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    return model, losses
'''


def _tokens(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 27, (4, 17)).astype(np.int64)


@pytest.mark.parametrize("flash", [True, False], ids=["sdpa", "masked_fill"])
def test_nanogpt_matches_torch(flash):
    torch = pytest.importorskip("torch")
    env = dict(TOKENS=_tokens(), FLASH=flash)
    ref = _run(NANOGPT, **env)
    torch.manual_seed(0)
    state = _state_as_numpy(ref["GPT"](ref["GPTConfig"]()))
    ref_model, ref_losses = ref["train"](state)
    ours = _run(_dualgraph_source(NANOGPT), **env)
    model, losses = ours["train"](state)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    assert model.get_num_params() == ref_model.get_num_params()
    for k, v in ref_model.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[k].numpy(), v.numpy(), rtol=2e-3, atol=2e-5, err_msg=k)


def test_nanogpt_trains_and_generates():
    import dualgraph as dg

    ns = _run(_dualgraph_source(NANOGPT), TOKENS=_tokens(), FLASH=True)
    model, losses = ns["train"](steps=30)
    assert losses[-1] < losses[0] - 0.5
    assert model.transformer.wte.weight is model.lm_head.weight
    dg.manual_seed(0)
    start = dg.tensor([[1, 2, 3]])
    out = model.generate(start, 20, temperature=0.8, top_k=5)
    assert tuple(out.shape) == (1, 23)
    np.testing.assert_array_equal(out.numpy()[:, :3], [[1, 2, 3]])
    assert out.numpy().min() >= 0 and out.numpy().max() < 27
    # generation runs under no_grad and must not have grown the graph
    assert not out.requires_grad


# ---- makemore's recurrent cells and its infinite data loader -----------------------------------------

MAKEMORE = '''
import torch
import torch.nn as nn
from torch.nn import functional as F
from torch.utils.data import Dataset
from torch.utils.data.dataloader import DataLoader


class RNNCell(nn.Module):
    def __init__(self, n_embd, n_embd2):
        super().__init__()
        self.xh_to_h = nn.Linear(n_embd + n_embd2, n_embd2)

    def forward(self, xt, hprev):
        xh = torch.cat([xt, hprev], dim=1)
        ht = F.tanh(self.xh_to_h(xh))
        return ht


class GRUCell(nn.Module):
    def __init__(self, n_embd, n_embd2):
        super().__init__()
        self.xh_to_z = nn.Linear(n_embd + n_embd2, n_embd2)
        self.xh_to_r = nn.Linear(n_embd + n_embd2, n_embd2)
        self.xh_to_hbar = nn.Linear(n_embd + n_embd2, n_embd2)

    def forward(self, xt, hprev):
        xh = torch.cat([xt, hprev], dim=1)
        r = F.sigmoid(self.xh_to_r(xh))
        hprev_reset = r * hprev
        xhr = torch.cat([xt, hprev_reset], dim=1)
        hbar = F.tanh(self.xh_to_hbar(xhr))
        z = F.sigmoid(self.xh_to_z(xh))
        ht = (1 - z) * hprev + z * hbar
        return ht


class RNN(nn.Module):
    def __init__(self, block_size, vocab_size, n_embd, n_embd2, cell_type):
        super().__init__()
        self.block_size = block_size
        self.vocab_size = vocab_size
        self.start = nn.Parameter(torch.zeros(1, n_embd2))
        self.wte = nn.Embedding(vocab_size, n_embd)
        if cell_type == 'rnn':
            self.cell = RNNCell(n_embd, n_embd2)
        elif cell_type == 'gru':
            self.cell = GRUCell(n_embd, n_embd2)
        self.lm_head = nn.Linear(n_embd2, self.vocab_size)

    def forward(self, idx, targets=None):
        device = idx.device
        b, t = idx.size()
        emb = self.wte(idx)
        hprev = self.start.expand((b, -1))
        hiddens = []
        for i in range(t):
            xt = emb[:, i, :]
            ht = self.cell(xt, hprev)
            hprev = ht
            hiddens.append(ht)
        hidden = torch.stack(hiddens, 1)
        logits = self.lm_head(hidden)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return logits, loss


class CharDataset(Dataset):
    def __init__(self, words, chars, max_word_length):
        self.words = words
        self.chars = chars
        self.max_word_length = max_word_length
        self.stoi = {ch:i+1 for i,ch in enumerate(chars)}
        self.itos = {i:s for s,i in self.stoi.items()}

    def __len__(self):
        return len(self.words)

    def get_vocab_size(self):
        return len(self.chars) + 1

    def get_output_length(self):
        return self.max_word_length + 1

    def encode(self, word):
        ix = torch.tensor([self.stoi[w] for w in word], dtype=torch.long)
        return ix

    def __getitem__(self, idx):
        word = self.words[idx]
        ix = self.encode(word)
        x = torch.zeros(self.max_word_length + 1, dtype=torch.long)
        y = torch.zeros(self.max_word_length + 1, dtype=torch.long)
        x[1:1+len(ix)] = ix
        y[:len(ix)] = ix
        y[len(ix)+1:] = -1
        return x, y


class InfiniteDataLoader:
    def __init__(self, dataset, **kwargs):
        train_sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=int(1e10))
        self.train_loader = DataLoader(dataset, sampler=train_sampler, **kwargs)
        self.data_iter = iter(self.train_loader)

    def next(self):
        try:
            batch = next(self.data_iter)
        except StopIteration:
            self.data_iter = iter(self.train_loader)
            batch = next(self.data_iter)
        return batch


@torch.inference_mode()
def evaluate(model, dataset, batch_size=50, max_batches=None):
    model.eval()
    loader = DataLoader(dataset, shuffle=True, batch_size=batch_size, num_workers=0)
    losses = []
    for i, batch in enumerate(loader):
        X, Y = batch
        logits, loss = model(X, Y)
        losses.append(loss.item())
        if max_batches is not None and i >= max_batches:
            break
    mean_loss = torch.tensor(losses).mean().item()
    model.train()
    return mean_loss


def main(cell_type, steps):
    torch.manual_seed(3407)
    words = WORDS
    chars = sorted(list(set(''.join(words))))
    max_word_length = max(len(w) for w in words)
    train_dataset = CharDataset(words, chars, max_word_length)
    model = RNN(train_dataset.get_output_length(), train_dataset.get_vocab_size(), 16, 32, cell_type)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01, betas=(0.9, 0.99), eps=1e-8)
    batch_loader = InfiniteDataLoader(train_dataset, batch_size=8, pin_memory=True, num_workers=NUM_WORKERS)
    first = evaluate(model, train_dataset)
    for step in range(steps):
        batch = batch_loader.next()
        X, Y = batch
        logits, loss = model(X, Y)
        model.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return first, evaluate(model, train_dataset)
'''

WORDS = ["emma", "olivia", "ava", "isabella", "sophia", "charlotte", "mia", "amelia", "harper", "evelyn",
         "abigail", "emily", "ella", "elizabeth", "camila", "luna", "sofia", "avery", "mila", "aria"]


@pytest.mark.parametrize("cell_type", ["rnn", "gru"])
def test_makemore_trains(cell_type):
    ns = _run(_dualgraph_source(MAKEMORE), WORDS=WORDS, NUM_WORKERS=0)
    first, last = ns["main"](cell_type, steps=60)
    assert last < first - 0.5, (first, last)


def test_makemore_with_worker_processes():
    ns = _run(_dualgraph_source(MAKEMORE), WORDS=WORDS, NUM_WORKERS=2)
    first, last = ns["main"]("rnn", steps=10)
    assert last < first


def test_makemore_dataset_matches_torch():
    torch = pytest.importorskip("torch")
    ref = _run(MAKEMORE, WORDS=WORDS, NUM_WORKERS=0)
    ours = _run(_dualgraph_source(MAKEMORE), WORDS=WORDS, NUM_WORKERS=0)
    chars = sorted(set("".join(WORDS)))
    a = ref["CharDataset"](WORDS, chars, 9)
    b = ours["CharDataset"](WORDS, chars, 9)
    for i in range(len(WORDS)):
        for r, o in zip(a[i], b[i]):
            np.testing.assert_array_equal(o.numpy(), r.numpy())
    ref_model = ref["RNN"](10, 27, 16, 32, "gru")
    model = ours["RNN"](10, 27, 16, 32, "gru")
    model.load_state_dict({k: v.detach().numpy() for k, v in ref_model.state_dict().items()})
    X, Y = (np.stack(t) for t in zip(*[(x.numpy(), y.numpy()) for x, y in (a[i] for i in range(8))]))
    _, ref_loss = ref_model(torch.tensor(X), torch.tensor(Y))
    import dualgraph as dg
    _, loss = model(dg.tensor(X), dg.tensor(Y))
    np.testing.assert_allclose(loss.item(), ref_loss.item(), rtol=1e-5)


# ---- micrograd's tests (test/test_engine.py), run against dualgraph as the reference side ---------

MICROGRAD = '''
import torch


def test_sanity_check():
    x = torch.Tensor([-4.0]).double()
    x.requires_grad = True
    z = 2 * x + 2 + x
    q = z.relu() + z * x
    h = (z * z).relu()
    y = h + q + q * x
    y.backward()
    return y.data.item(), x.grad.item()


def test_more_ops():
    a = torch.Tensor([-4.0]).double()
    b = torch.Tensor([2.0]).double()
    a.requires_grad = True
    b.requires_grad = True
    c = a + b
    d = a * b + b**3
    c = c + c + 1
    c = c + 1 + c + (-a)
    d = d + d * 2 + (b + a).relu()
    d = d + 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g = g + 10.0 / f
    g.backward()
    return g.data.item(), a.grad.item(), b.grad.item()
'''


def test_micrograd_reference_side():
    ns = _run(_dualgraph_source(MICROGRAD))
    y, xg = ns["test_sanity_check"]()
    assert (y, xg) == (-20.0, 46.0)  # hand-derived: z=-10, q=40, h=100, y=-20; dy/dx=46
    g, ag, bg = ns["test_more_ops"]()
    # micrograd's own expected values (computed there with torch)
    assert abs(g - 24.70408163265306) < 1e-6
    assert abs(ag - 138.83381924198252) < 1e-6
    assert abs(bg - 645.5772594752186) < 1e-6
    torch = _torch_or_none()
    if torch is not None:
        ref = _run(MICROGRAD)
        assert ref["test_more_ops"]() == pytest.approx((g, ag, bg), rel=1e-12)


# ---- the seed articles' TensorFlow 1 and MXNet examples, imports changed -----------------------------

TF1_SEED = '''
import tensorflow as tf

x = tf.placeholder(tf.float32)
y = x * x + 2

with tf.Session() as sess:
    result = sess.run(y, feed_dict={x: 3})
'''

MXNET_SEED = '''
from mxnet import autograd, nd

a = nd.ones((2,1))
a.attach_grad()
with autograd.record():
    b = nd.ones((2,1))
    c = 2 * a + b
c.backward()
'''


def test_seed_examples_of_tf1_and_mxnet():
    import dualgraph.static as tf

    tf.reset_default_graph()
    ns = _run(TF1_SEED.replace("import tensorflow as tf", "import dualgraph.static as tf"))
    assert ns["result"] == 11.0 and np.asarray(ns["result"]).dtype == np.float32
    ns = _run(MXNET_SEED.replace("from mxnet import", "from dualgraph import"))
    np.testing.assert_array_equal(ns["a"].grad.numpy(), [[2.0], [2.0]])
    assert ns["c"].dtype == np.float32
