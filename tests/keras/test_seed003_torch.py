"""Seed 003's PyTorch code with cnnkit: its `CNN` class unchanged, trained by cnnkit's engine
(`cnnkit.fit`), and its own hand-written loop fed by `cnnkit.data.loader` in place of
torchvision's DataLoader. Fashion-MNIST stands in for MNIST (not on the test machines);
lines marked `# test:` are the test's."""
from __future__ import annotations

import numpy as np
import torch

import cnnkit


class CNN(torch.nn.Module):  # seed 003, unchanged

    def __init__(self):
        super(CNN, self).__init__()
        self.layer1 = torch.nn.Sequential(
            torch.nn.Conv2d(1, 32, kernel_size=3, stride=1, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(kernel_size=2, stride=2))
        self.layer2 = torch.nn.Sequential(
            torch.nn.Conv2d(32, 64, kernel_size=3, stride=1, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(kernel_size=2, stride=2))
        self.fc = torch.nn.Linear(7 * 7 * 64, 10, bias=True)
        torch.nn.init.xavier_uniform_(self.fc.weight)

    def forward(self, x):
        out = self.layer1(x)
        out = self.layer2(out)
        out = out.view(out.size(0), -1)  # channels_last batches would break this view
        out = self.fc(out)
        return out


def _data():
    from cnnkit.data import load_dataset

    ds = load_dataset("fashion-mnist")
    ds.x_train, ds.y_train = ds.x_train[:600], ds.y_train[:600]  # test: a slice
    ds.x_test, ds.y_test = ds.x_test[:200], ds.y_test[:200]
    return ds


def test_cnnkit_trains_the_seeds_own_module_reproducibly():
    from cnnkit.train.callbacks import EarlyStopping

    ds = _data()
    runs = []
    for _ in range(2):
        torch.manual_seed(777)
        model = CNN()
        trained = cnnkit.fit(model, ds, epochs=2, batch_size=100, optimizer="adam", lr=1e-3,
                             seed=777, validation_split=0.2, verbose=0,
                             callbacks=[EarlyStopping(patience=2, restore_best_weights=True)])
        assert trained.module is model  # trained in place
        runs.append((trained.history.history["loss"], trained.evaluate(ds.x_test, ds.y_test)))
    assert runs[0] == runs[1]  # torch.manual_seed(777) + seed=777: the same run, digit for digit
    history, scores = runs[0]
    assert len(history) == 2 and history[1] < history[0]
    assert scores["accuracy"] > 0.5  # chance: 0.1
    probs = trained.predict(ds.x_test[:5])
    assert probs.shape == (5, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    right = (trained.predict(ds.x_test).argmax(1) == ds.y_test.numpy()).mean()
    assert abs(right - scores["accuracy"]) < 1e-9
    assert next(model.parameters()).is_contiguous()  # NCHW weights kept, as the user built them


def test_the_seeds_own_loop_with_cnnkit_data_loader():
    device = 'cpu'
    torch.manual_seed(777)
    learning_rate = 0.001
    training_epochs = 1  # test: 1 (seed: 15)
    batch_size = 100
    data_loader = cnnkit.data.loader(_data(), batch_size=batch_size, shuffle=True)
    model = CNN().to(device)
    criterion = torch.nn.CrossEntropyLoss().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    total_batch = len(data_loader)
    assert total_batch == 6
    for epoch in range(training_epochs):
        avg_cost = 0
        for X, Y in data_loader:
            assert X.shape == (100, 1, 28, 28) and X.dtype == torch.float32 and X.is_contiguous()
            assert float(X.max()) <= 1 and Y.dtype == torch.int64
            optimizer.zero_grad()
            hypothesis = model(X)
            cost = criterion(hypothesis, Y)
            cost.backward()
            optimizer.step()
            avg_cost += cost / total_batch
        print('[Epoch: {:>4}] cost = {:>.9}'.format(epoch + 1, avg_cost))
    assert 0 < float(avg_cost) < 2.3  # below the untrained cost, ln(10)


def test_trainer_takes_a_module_directly(tmp_path):
    from cnnkit.train.callbacks import ModelCheckpoint
    from cnnkit.train.config import TrainConfig

    ds = _data()
    torch.manual_seed(777)
    trainer = cnnkit.Trainer(CNN(), TrainConfig(epochs=1, batch_size=100, seed=777, verbose=0),
                             [ModelCheckpoint(tmp_path / "last", save_best_only=False)])
    history = trainer.fit(ds.x_train, ds.y_train)
    assert len(history.history["loss"]) == 1
    scores = trainer.evaluate(ds.x_test, ds.y_test)
    assert 0 <= scores["accuracy"] <= 1
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "last" / "weights.safetensors"))
    fresh = CNN()
    fresh.load_state_dict(saved)  # the module's own keys: your class loads its checkpoint
    logits = trainer.predict_logits(ds.x_test[:4])
    with torch.no_grad():
        ours = fresh(ds.x_test[:4].reshape(4, 1, 28, 28).float() / 255)  # one channel: NHWC = NCHW
    torch.testing.assert_close(ours, logits, atol=1e-5, rtol=1e-5)
