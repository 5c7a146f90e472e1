import pathlib

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]


class Oracle(torch.nn.Module):
    """A hand-written 'model' for parity with exact logits: it writes the long chain with
    probability ``p_long`` at the first branch point, like a perfectly calibrated NTP model.

    After the prompt (d bits) it puts probability (1+p)/2 on x_1 and (1-p)/2 on the other bit;
    after a first token equal to x_1 it continues the chain with probability 2p/(1+p), else EOS;
    inside the chain it writes the right running parity, then EOS after d chain tokens.
    """

    def __init__(self, d, p_long):
        super().__init__()
        self.d, self.p = d, p_long
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, tokens):
        B, T = tokens.shape
        d, p = self.d, self.p
        logits = torch.full((B, T, 4), -30.0)
        for t in range(d - 1, T):
            n_resp = t - d + 1  # response tokens already in tokens[:, :t+1]
            x = tokens[:, :d]
            probs = torch.zeros(B, 4)
            if n_resp == 0:
                x1 = x[:, 0]
                probs[torch.arange(B), x1] = (1 + p) / 2
                probs[torch.arange(B), 1 - x1] = (1 - p) / 2
            elif n_resp < d:
                running = torch.cumsum(x, 1) % 2
                on_chain = (tokens[:, d : t + 1] == running[:, :n_resp]).all(1)
                nxt = running[:, n_resp]
                if n_resp == 1:
                    cont = 2 * p / (1 + p)
                    probs[torch.arange(B), nxt] = cont
                    probs[:, 2] = 1 - cont
                else:
                    probs[torch.arange(B), nxt] = 1.0
                probs[~on_chain] = 0.0
                probs[~on_chain, 2] = 1.0
            else:
                probs[:, 2] = 1.0
            logits[:, t] = torch.log(probs.clamp(min=1e-12))
        return logits + 0 * self.dummy


@pytest.fixture
def oracle():
    return Oracle
