"""
===============================================
Unseen classes: retrieval and pair verification
===============================================

A classifier knows only the classes it was trained on; an embedding can be used on new ones. Face
verification works this way: the network is trained on some people and then asked whether two
photos of people it has never seen show the same person.

Here a :class:`~sklearn_triplet.TripletEmbedder` is trained on the digits 0 to 6 only, and
evaluated on the digits 7, 8 and 9, which it never saw:

- retrieval: does a 7 find other 7s first? (precision@1 and MAP@R, against raw pixels);
- verification: are two images the same digit? A
  :class:`~sklearn_triplet.verification.PairVerifier` thresholds the distance between the two
  embeddings, calibrated on labelled pairs of unseen digits and tested on other pairs.
"""

# %%
# Train on 0-6, keep 7-9 aside
# ----------------------------

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.metrics import RocCurveDisplay
from sklearn.model_selection import train_test_split

from sklearn_triplet import TripletEmbedder
from sklearn_triplet.metrics import retrieval_scores
from sklearn_triplet.verification import PairVerifier, make_pairs, paired_distances

X, y = load_digits(return_X_y=True)
X = X / 16.0
seen = y <= 6
X_seen, y_seen = X[seen], y[seen]
X_unseen, y_unseen = X[~seen], y[~seen]
print(f"{len(y_seen)} training images of 0-6, {len(y_unseen)} images of unseen 7-9")

embedder = TripletEmbedder(max_iter=30, random_state=0).fit(X_seen, y_seen)

# %%
# Retrieval among unseen digits
# -----------------------------
# Every unseen image queries all the others (leave-one-out), by Euclidean distance on raw pixels
# or on the embedding.

retrieval = {
    "raw pixels": retrieval_scores(X_unseen, y_unseen),
    "embedding trained on 0-6": retrieval_scores(embedder.transform(X_unseen), y_unseen),
}
for name, scores in retrieval.items():
    print(f"{name:<26} precision@1 {scores['precision_at_1']:.4f}   MAP@R {scores['map_at_r']:.4f}")

# %%
# Pair verification
# -----------------
# The unseen images are split in two halves: pairs drawn from the first calibrate the threshold
# (the one that maximises accuracy), pairs drawn from the second test it. With an embedder, the
# verifier takes the two images of a pair side by side, ``np.hstack([X1, X2])``; without one, it
# takes one distance per pair, here the raw-pixel distance.

X_cal, X_eval, y_cal, y_eval = train_test_split(
    X_unseen, y_unseen, test_size=0.5, stratify=y_unseen, random_state=0
)
X1_cal, X2_cal, same_cal = make_pairs(X_cal, y_cal, n_pairs=1000, random_state=0)
X1_eval, X2_eval, same_eval = make_pairs(X_eval, y_eval, n_pairs=1000, random_state=1)
pairs_cal, pairs_eval = np.hstack([X1_cal, X2_cal]), np.hstack([X1_eval, X2_eval])

on_embedding = PairVerifier(embedder).fit(pairs_cal, same_cal)
on_pixels = PairVerifier().fit(paired_distances(X1_cal, X2_cal), same_cal)
pixel_distances_eval = paired_distances(X1_eval, X2_eval)

print(f"embedding:  threshold {on_embedding.threshold_:.3f}, "
      f"test accuracy {on_embedding.score(pairs_eval, same_eval):.4f}")
print(f"raw pixels: threshold {on_pixels.threshold_:.3f}, "
      f"test accuracy {on_pixels.score(pixel_distances_eval, same_eval):.4f}")

# %%
# Scores and ROC curves
# ---------------------
# The ROC curve sweeps the threshold over the test pairs: the true-accept rate (same-digit pairs
# accepted) against the false-accept rate (different-digit pairs accepted). The dot marks the
# calibrated threshold.

fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), layout="constrained")
names = ["precision_at_1", "map_at_r"]
width = 0.38
positions = np.arange(len(names))
for offset, (label, scores) in zip([-width / 2, width / 2], retrieval.items()):
    bars = axes[0].bar(positions + offset, [scores[n] for n in names], width, label=label)
    axes[0].bar_label(bars, fmt="%.3f", fontsize="small")
axes[0].set_xticks(positions, ["precision@1", "MAP@R"])
axes[0].set_ylim(0, 1.1)
axes[0].set_title("retrieval among unseen digits 7-9")
axes[0].legend(loc="lower center", fontsize="small")

for verifier, X_pairs, label in [
    (on_embedding, pairs_eval, "embedding trained on 0-6"),
    (on_pixels, pixel_distances_eval, "raw pixels"),
]:
    display = RocCurveDisplay.from_estimator(verifier, X_pairs, same_eval, name=label, ax=axes[1])
    predicted = verifier.predict(X_pairs)
    far = np.mean(predicted[~same_eval])
    tar = np.mean(predicted[same_eval])
    axes[1].plot(far, tar, "o", color=display.line_.get_color())
axes[1].set_title("verification of unseen digit pairs")
axes[1].set_xlabel("false-accept rate")
axes[1].set_ylabel("true-accept rate")
plt.show()
