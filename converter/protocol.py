"""The evaluation protocol for a room-ready model: one results file per run, resumable.

Runs (each trains one model, scores it, writes ``<results>/<recipe>/<run>.json``):

* ``dev``: the fixed development split on which recipes are chosen. The development
  speakers of every corpus (:data:`DEV_SPEAKERS`) are held out; the float model is scored
  per corpus, clean, and on the far-field version of the RAVDESS development actors.
  Nothing else is ever used to choose a recipe. It also scores the arousal-only clips of a
  corpus the recipe never trains on (BAVED, Arabic) as a language the model never heard
  (:mod:`converter.unseen_arousal`).
* ``cv1`` .. ``cv5``: RAVDESS speaker-independent EmoBox folds. The fold's actors are the
  test set (8-way, clean and far-field); everything else the recipe trains on is training.
* ``loco-<corpus>``: leave one corpus out (ravdess, nemo, ased): train on the others, test
  on the whole corpus, scored like the independent evaluation (below).
* ``unseen``: no training and no test speakers, only the unseen language's arousal: for
  scoring a model file that heard every speaker of the corpora (the shipped model) with
  ``converter score``.

Scoring (:func:`restricted_predictions`): the argmax of the 8 probabilities restricted
to the classes the test corpus has, with calm added to neutral where the corpus has
neutral but no calm. When the training corpora lack some of the test corpus's classes
(RAVDESS left out), only the classes both sides have are scored: calm is folded into
neutral, disgust is dropped.

Far-field (:mod:`converter.rooms`): every test clip is convolved with a measured room of a
held-out place, mixed with held-out real noise at 5-20 dB SNR against the reverberant
speech and attenuated by 0-20 dB, seeded per clip, so every model hears the same degraded
clips.

Calibration: each ``cv``/``loco`` run also holds out a few *training* speakers
(:data:`CALIBRATION_SPEAKERS` per corpus, never test speakers); a temperature is fitted on
them (clip NLL) and the expected calibration error of the top-1 probability is reported
on the test clips before and after it.
"""

from __future__ import annotations

import hashlib
import json
import time
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edge_ser.atomic_write import atomic_path, write_bytes_atomically
from edge_ser.metadata import EMOTIONS

from .cache import Treatment
from .checkpoint import checkpoint_for
from .corpora import EMOBOX_FOLDS, Item, corpus_classes
from .run_outputs import OUTPUT_SETS, ScoredSet, combine, load_outputs, member_key, outputs_path, save_outputs
from .train import ClipSet, Recipe, confusion, feature_blocks, load_clipset, recall_by_class, softmax, ua_wa
from .train import window_outputs as clip_window_outputs
from .unseen_arousal import score_arousal, unseen_arousal_items

#: Development speakers per corpus: held out of every ``dev`` run; the RAVDESS ones are
#: EmoBox fold 1, on which the first recipe was tuned too.
DEV_SPEAKERS: Dict[str, Tuple[str, ...]] = {
    "ravdess": ("01", "11", "20", "21"),
    "nemo": ("nemo-EB0", "nemo-WR0"),
    "ased": tuple(f"ased-{i:02d}" for i in range(1, 9)),
}
#: Training speakers held out per corpus to fit the temperature in ``cv``/``loco`` runs.
CALIBRATION_SPEAKERS: Dict[str, int] = {"ravdess": 2, "nemo": 1, "ased": 5}
LOCO_CORPORA: Tuple[str, ...] = ("ravdess", "nemo", "ased")
#: Far-field draws per clip of the development split's second far-field score, which covers
#: every corpus: with the RAVDESS development actors alone (240 clips, one draw each) two
#: trainings of one recipe differed by 5 points, too coarse to choose recipes with.
DEV_FARFIELD_DRAWS = 3
ECE_BINS = 15
TEMPERATURES = np.exp(np.linspace(np.log(0.25), np.log(8.0), 121))


def _rooms_recipe() -> Recipe:
    """All three corpora drawn uniformly, room-degraded windows 60 % of the time, 5000 batches."""
    return Recipe(augmentation="room", opus_wav=True, sampling="balanced", steps=5000, masked=True,
                  warmup_epochs=1, clean_probability=0.4, aug_variants=3)


def _rooms_ravdess_half_recipe() -> Recipe:
    """The rooms recipe with RAVDESS drawn for half the batches and more, cleaner batches.

    Why: the rooms recipe gave RAVDESS a third of 5000 batches, less than half of what the
    first recipe's 100 epochs give it (about 3600 batches), and clean RAVDESS fell 9
    points on the dev actors.
    """
    return replace(_rooms_recipe(), steps=8000, clean_probability=0.5,
                   corpus_weights={"ravdess": 2.0, "nemo": 1.0, "ased": 1.0})


def _rooms_varied_recipe() -> Recipe:
    """rooms-ravdess-half with six room-degraded copies of every clip instead of three.

    Why: at 2 : 1 : 1 a RAVDESS clip is drawn about 100 times in 8000 batches, but it has
    only three room copies (three rooms, three noises, three SNRs); the far-field drop on
    the dev actors suggests the model learns those copies rather than rooms.
    """
    return replace(_rooms_ravdess_half_recipe(), aug_variants=6)


def _rooms_wide_recipe() -> Recipe:
    """rooms-ravdess-half with a wider network (32, 48, 64, 96, 128 channels).

    Why: one model now has to hear three corpora clean and through rooms; the 110k-parameter
    net may lack the capacity. About 1.65x the device latency (still inside the 5 ms budget).
    """
    return replace(_rooms_ravdess_half_recipe(), channels=(32, 48, 64, 96, 128))


def _rooms_arousal_recipe() -> Recipe:
    """rooms-ravdess-half plus an arousal head trained on BAVED (Arabic words, low/mid/high).

    Why: in a language it never heard the model answers neutral or angry, rarely sad or
    happy (nEMO left out: sad 7 %, happy 14 % recall). Arousal is the part of emotion that
    carries best across languages, and BAVED adds 59 Arabic voices with arousal labels. BAVED
    gets 1/9 of the draws; 9000 batches keep the emotion batches of rooms-ravdess-half's 8000.
    """
    return replace(_rooms_ravdess_half_recipe(), steps=9000, arousal_weight=1.0,
                   corpus_weights={"ravdess": 2.0, "nemo": 1.0, "ased": 1.0, "baved": 0.5})


def _rooms_cmn_recipe() -> Recipe:
    """rooms-ravdess-half with each mel band's mean over the window subtracted inside the network.

    Why: split into its parts on the dev actors (an ad hoc run, not a protocol row), the
    shipped recipe lost about 9 points to held-out rooms alone and about 4 to held-out noise
    alone. A measured room and a microphone colour the spectrum, and a colouring that holds
    for longer than the window's frames adds a constant per band to log-mel; so does the
    level. Subtracting the band means removes all of them, and with them the speaker's
    average spectrum, which is also what utterance-level normalisation removes in
    cross-corpus emotion recognition. No device change: the subtraction is in the graph.
    """
    return replace(_rooms_ravdess_half_recipe(), input_norm="band_mean")


def _rooms_sim_recipe() -> Recipe:
    """rooms-ravdess-half with simulated shoebox rooms for a third of the room-degraded copies.

    Why: the training side of the measured survey has about 150 responses, and the far-field
    score (held-out places) falls most where rooms are concerned: in an ad hoc split of the dev
    far-field condition, rooms alone cost the shipped recipe about 9 points, noise alone about 4.
    Simulated rooms (pyroomacoustics) add sizes, reverberation times and distances the survey
    lacks, so the model can learn rooms rather than those 150.
    """
    return replace(_rooms_ravdess_half_recipe(), augmentation="room-sim")


def _rooms_twins_recipe() -> Recipe:
    """rooms-ravdess-half trained on clean/degraded twins with a consistency term.

    Why: every recipe so far changed the room material (more copies, simulated rooms, a wider
    net, in-graph normalisation) and moved far-field by 2 points at most. The label alone
    tells the model what a degraded window is; it does not say that the room should change
    nothing. Here every batch holds each clip's clean window and a degraded copy of the same
    window (so still half clean, like rooms-ravdess-half), and the degraded copy is also pulled
    towards the clean copy's prediction (KL, weight 1, not tuned). Same 8000 batches of 32
    windows, so the same compute, but 16 clips per batch instead of 32.
    """
    return replace(_rooms_ravdess_half_recipe(), consistency=1.0)


def _rooms_twins_b64_recipe() -> Recipe:
    """rooms-twins with 32 clips a batch (64 windows) for 4000 batches: as many clip draws as rooms-ravdess-half.

    Why: rooms-twins lost on every dev score, nEMO clean most (-6 points), the way a recipe
    that sees fewer clips loses; but it drew 16 clips a batch, half as many as the shipped
    recipe. This separates the consistency term from the halved draws: the same windows are
    computed as in rooms-ravdess-half (4000 x 64 = 8000 x 32) and the same number of clips
    drawn, with half as many optimizer steps.
    """
    return replace(_rooms_twins_recipe(), batch_size=64, steps=4000)


def _rooms_long_recipe() -> Recipe:
    """rooms-ravdess-half trained for 12000 batches instead of 8000.

    Why: rooms-twins-b64 drew as many clips as rooms-twins in half the optimizer steps and
    lost 3 more points far-field (46.2 against 48.9 on two seeds): on this material the
    number of steps limits the model more than the number of clips seen, so the shipped
    recipe's 8000 may be too few. 1.5x the training time.
    """
    return replace(_rooms_ravdess_half_recipe(), steps=12000)


def _rooms_degraded_recipe() -> Recipe:
    """rooms-ravdess-half with 30 % clean windows instead of 50 %.

    Why: on the dev split the shipped recipe loses 14 points on RAVDESS through held-out rooms
    and 3-6 on nEMO and ASED, while rooms-long showed that more batches buy clean accuracy
    (+2.1 RAVDESS): clean windows are not what the model lacks. Here 70 % of the 8000 batches'
    windows are room-degraded copies (1.4x the shipped recipe's), at the same compute.
    """
    return replace(_rooms_ravdess_half_recipe(), clean_probability=0.3)


def _rooms_attention_recipe() -> Recipe:
    """rooms-ravdess-half with a learned weighted mean over time in place of the maximum over time.

    Why: the head keeps the mean and the maximum of every channel over the window's frames. A
    maximum follows the single loudest frame, and with real noise 5-20 dB under the voice that
    is often a door, a dog or a dish; in a language it never heard the model's most frequent
    answer is angry. A softmax over the frames of a learned score (one per frame) can
    weight the frames that carry the voice instead. No device change beyond the graph: 385
    parameters, and SOFTMAX and MUL beside the ops the shipped graph has.
    """
    return replace(_rooms_ravdess_half_recipe(), head="time_attention")


def _rooms_wide_long_recipe() -> Recipe:
    """rooms-wide trained for 12000 batches: the two recipes that each gained on every dev score, together.

    Why: split into parts (``farfield-parts``), the dev models fit reverberant copies of their
    own training speakers 5-8 points worse than clean ones, with the very rooms and noise they
    trained on: the network does not hold what survives a room, whichever rooms it hears.
    Capacity (rooms-wide) and steps (rooms-long) each gained +0.8 far-field on two seeds,
    rooms-long also +2.1 RAVDESS clean. About 2.5x the shipped recipe's training time and 1.65x
    its device latency (inside the 5 ms budget).
    """
    return replace(_rooms_wide_recipe(), steps=12000)


def _rooms_pcen_recipe() -> Recipe:
    """rooms-ravdess-half on PCEN features (``edge-pcen``) instead of log-mel.

    Why: split into parts (``farfield-parts``), the dev models fit reverberant and noisy copies
    of their own training speakers 6-18 points worse than clean ones, with the very rooms and
    noise they trained on: the limit is what survives a room in the representation, not which
    rooms were heard. Log-mel keeps a reverberant tail and a steady fridge at their level, and
    the network must learn to see past them. Per-channel energy normalization divides each
    band by its own running average (0.4 s), so what is steady in a band (a hum, a tail that
    outlasts the syllable) flattens towards a constant and onsets stand out; it is the front end
    of far-field keyword spotting. Parameters are the published defaults, not tuned here. The
    device computes it in NumPy (a per-frame smoother over 64 bands); nothing else changes.
    """
    return replace(_rooms_ravdess_half_recipe(), features="edge-pcen")


def _rooms_pcen_arousal_recipe() -> Recipe:
    """rooms-pcen plus an auxiliary arousal head trained on BAVED (Arabic words, low/mid/high).

    Why: PCEN divides each band by its own running level, so the loudness and spectral tilt
    that tell an angry voice from a sad one are flattened; the shipped ensemble's PCEN member is
    its weak one on clean speech (59.1 % RAVDESS on the folds against the log-mel member's
    68.0 %). An arousal target from a fourth language asks the network to find arousal in what
    PCEN keeps (onsets, pitch movement, tempo), which should also carry to languages it never
    heard. BAVED gets 1/9 of the draws; 9000 batches keep rooms-pcen's 8000 emotion batches, as
    ``rooms-arousal`` does for rooms-ravdess-half. The head is cut off before export.
    """
    return replace(_rooms_pcen_recipe(), steps=9000, arousal_weight=1.0,
                   corpus_weights={"ravdess": 2.0, "nemo": 1.0, "ased": 1.0, "baved": 0.5})


def _rooms_pcen_long_recipe() -> Recipe:
    """rooms-pcen trained for 12000 batches instead of 8000: the PCEN member as long as the log-mel one.

    Why: the shipped ensemble (rooms-long-pcen) misses one criterion, clean RAVDESS on the
    folds (66.2 % against the 66.9 % asked), and its PCEN member is the weak one there (58.1 %
    clean over four folds, against 64.8 % for its log-mel member, which already trains for
    12000 batches). On log-mel, 12000 batches instead of 8000 gained 2.1 points of RAVDESS
    clean on two dev seeds; tilting the mean towards the log-mel member lost on the dev split,
    so the views complement each other and the weaker view has to get better instead. The same
    device cost; 1.5x rooms-pcen's training time.
    """
    return replace(_rooms_pcen_recipe(), steps=12000)


def _rooms_long_ravdess_more_recipe() -> Recipe:
    """rooms-long with RAVDESS drawn for two thirds of the batches (4 : 1 : 1) instead of half.

    Why: clean RAVDESS on the folds is the shipped ensemble's one missed criterion. Training
    the PCEN member longer (rooms-pcen-long) bought nEMO, ASED and far-field, not RAVDESS
    clean, and tilting the mean towards the log-mel member lost on the development split.
    The lever that moved RAVDESS clean most so far is its share of the draws: from a third
    (rooms, uniform over corpora) to half (rooms-ravdess-half) it rose by about ten points.
    Here the log-mel member hears RAVDESS in two thirds of its batches; nEMO and ASED keep a
    sixth each. Same training time and device cost as rooms-long.
    """
    return replace(_rooms_long_recipe(), corpus_weights={"ravdess": 4.0, "nemo": 1.0, "ased": 1.0})


def _rooms_pcen_db_recipe() -> Recipe:
    """rooms-pcen hearing log-mel too: PCEN and log-mel of the same bands as two input channels.

    Why: on the folds the shipped ensemble's clean RAVDESS (66.2 %) is below its own log-mel
    member's (68.0 %, float), while its far-field UA (57.8 %) is above it (53.1 %): the PCEN
    member buys rooms and costs studio speech (59.1 % clean). Training the PCEN member longer
    and giving the log-mel member more RAVDESS both left RAVDESS clean where it was on the
    development split. A member that hears both views, aligned band on band, can keep what
    PCEN holds through a room and what log-mel holds in a quiet one. The ensemble's input is
    unchanged (edge-db-pcen: the log-mel member reads its block, this one both); the device
    cost is one more input channel in the first convolution.
    """
    return replace(_rooms_pcen_recipe(), features="edge-db-pcen")


def _rooms_db_distilled_recipe() -> Recipe:
    """rooms-pcen-db taught by the shipped ensemble: one network hearing both views learns from
    the answers of the two-network ensemble (rooms-long-pcen) trained on the same clips.

    Why: the shipped ensemble costs twice the multiply-adds of one network, 6.7 ms per 3 s window
    on this machine, where the issue's budget is 5 ms; rooms-pcen-db, one network on both views,
    costs about one network (one more input channel in the first convolution) and on the
    development split came within 0.4 points of the ensemble's pooled clean UA but 1.8 below its
    far-field UA over every corpus (two trainings each). A network taught by an ensemble's
    softened answers (knowledge distillation, Hinton et al. 2015) often keeps much of what the
    ensemble adds. Weight 1 and temperature 2 are the usual values, set before any run; 8000
    batches as rooms-pcen-db, so the teacher is the one difference. The teacher's members are
    the run's own (:func:`_teacher_model`): they never heard the run's test speakers.

    The rule, written before its first training was read: one development training with
    ``--seed 5``, taught by the seed-5 members (rooms-long-seed5, rooms-pcen-seed5, trained on
    the same machine in the same stop), is read against (a) its teacher, the seed-5 pair
    scored as an ensemble on the same split, and (b) rooms-pcen-db's two trainings (the same
    network without a teacher). It earns a second training (seed 6 with seed-6 teachers, never
    used on this split) if, against (a), pooled clean UA and far-field UA over every corpus
    each lose at most 1 point, and against (b), far-field over every corpus gains at least 1
    point. RAVDESS clean (240 clips; one training moves it by about 1.9 points) and the unseen
    language are reported, not judged on one training. If the mean of the two trainings also
    passes, the full protocol follows, where it replaces the shipped model only if its
    five-fold clean UA is not lower than rooms-long-pcen's, its five-fold far-field UA and
    leave-one-corpus-out mean each at most 1 point lower, its drop at most 10 points, and it
    meets the issue's device budget.
    """
    return replace(_rooms_pcen_db_recipe(), teacher="rooms-long-pcen", distill_weight=1.0, distill_temperature=2.0)


def _rooms_long_warp_recipe() -> Recipe:
    """rooms-long with every training window's mel axis warped by a factor drawn from 0.9-1.1 in Hz.

    Why: the one criterion the shipped ensemble misses is clean RAVDESS on unseen actors
    (66.3 % on two seeds, against 66.9 %), and its log-mel member carries that score. What
    separates a test actor from the training ones is first of all a voice: vocal tract length
    moves every formant by a common factor. The cached room copies change speed (pitch and
    formants together) on a quarter of the windows only, and the clean half never; a warp on
    every window (converter.augment.warp_bands, VTLP) gives the 14 training actors of a fold
    many more voices at the cost of one interpolation per window. Unseen voices are also what
    the product meets in every room. The range is VTLP's usual one, set before any run.
    """
    return replace(_rooms_long_recipe(), band_warp=0.1)


def _rooms_long_ema_recipe() -> Recipe:
    """rooms-long whose final weights are an exponential moving average of its last ~1000 batches (0.999).

    Why: the one criterion the shipped ensemble misses is clean RAVDESS on unseen actors, its
    log-mel member carries that score, and that score moves by 2-3 points between two trainings
    of one recipe (rooms-long's three dev trainings score 66.0, 66.0 and 69.1 %; the first
    recipe's two seeds differ by 2.8 points over five folds). Part of that spread is where the
    last batches happened to leave the weights; an average of the weights over the last thousand
    batches sits nearer the middle of the region they visit, which usually generalizes better to
    unseen speakers. No device cost: the exported graph is the same network. The momentum is set
    before any run (an average over about four rounds of 250 batches).
    """
    return replace(_rooms_long_recipe(), ema=0.999)


def _rooms_long_mic_recipe() -> Recipe:
    """rooms-long with half of its room-degraded copies heard through another microphone.

    Why: the corpora were recorded on studio or headset microphones, and the device hears the
    USB microphone its owner plugs in. Through a cheap capsule's drawn response (the listening
    condition ``mic``) the shipped recipe's log-mel member loses 4.2 points of pooled UA on the
    development split (rooms-long-seed5: 60.2 -> 56.0 %; RAVDESS 66.0 -> 62.9 %), its PCEN member
    nothing (PCEN divides each band by its own level, so a fixed response divides out), and the
    ensemble 1.8. The log-mel member never heard a microphone other than the corpora's, beside
    the telephone band on 15 % of its copies. Here, of the copies made by ``room``, half also pass
    through a random equalizer and roll-offs drawn by audiomentations after the room and the
    noise (``room-mic``, converter.augment.another_microphone: a 7-band parametric equalizer at
    +-6 dB, a high-pass at 50-400 Hz, on half of them a low-pass at 3.5-7.5 kHz). That family
    is not the one ``mic`` draws from, so the condition still measures microphones never
    trained on. Everything else is rooms-long's; the shares and ranges are set, not tuned. No
    device cost.

    Rule, written before its first training was read: one development training with seed 5 is
    read against rooms-long-seed5 (the same recipe and seed without the microphones). It earns
    a second training if, pooled over every corpus, ``mic`` gains at least 2 points (56.0 % ->
    58.0 %), while pooled clean (60.2 %), RAVDESS clean (66.0 %) and far-field over every
    corpus (52.1 %) each lose at most 1 point. Reported beside it and read by no rule: the
    telephone band, the unseen language, and its ensemble with rooms-pcen-seed5
    (rooms-long-mic-pcen-seed5) against the seed-5 pair. The second training, with seed 4, is
    read beside rooms-long --seed 4 trained again (training is bit-reproducible here, so that is
    the stored rooms-long-seed4 row's model, kept this time to be scored under ``mic``): the mean
    of the two trainings against the mean of the two references must meet the same margins. One
    member that passes both goes to the folds, paired with the shipped recipe's PCEN members.

    Read (seed 5, against rooms-long-seed5): ``mic`` pooled 57.4 against 56.0 % (+1.4; the rule
    asks +2), RAVDESS clean 64.8 against 66.0 % (-1.2; at most -1 allowed), pooled clean 60.5
    against 60.2 %, far-field over every corpus 54.5 against 52.1 % (+2.4). It fails the rule,
    and the second stage above was not run.

    What the reading prompted, and a rule written after it (so it does not count the seed-5
    training): far-field over every corpus rose 2.4 points against the same seed and 1.6 against
    the mean of rooms-long's six development trainings (rooms-long, -again, -seed2 to -seed5:
    52.9 %; one training's spread there is 0.8), more than any log-mel member judged on this
    split before. A room colours the voice too, and the held-out rooms are colourings the
    training rooms did not have. Two fresh trainings, seeds 6 and 7 (never trained on this split
    for rooms-long), are read as a mean against the mean of those six: far-field over every
    corpus must gain at least 1 point (52.9 -> 53.9 %), and RAVDESS clean (65.7 %) and pooled
    clean (59.6 %) each lose at most 1. (The seed-means table in protocol.md shows four of those
    six, 53.4 % far-field: seeds 4 and 5 were kept out of it so that verdicts already read would
    not move. This rule reads all six, every training of rooms-long on this split.) A member that
    passes goes to the folds, paired on every fold with the shipped recipe's PCEN member outputs
    (``converter pair``).

    Read (seeds 6 and 7, their mean against the six): far-field over every corpus 53.7 % (52.9
    and 54.4; +0.8, the rule asks +1), RAVDESS clean 64.3 % (64.1 and 64.5; -1.4), pooled clean
    58.4 % (58.4 and 58.3; -1.2). It fails on all three, and stops: no fold was run. Over its
    three trainings the microphones bought about a point of far-field (53.9 %) and cost about a
    point of RAVDESS clean (64.5 %) and half a point pooled (59.1 %); the seed-5 reading was
    mostly that seed's luck.
    """
    return replace(_rooms_long_recipe(), augmentation="room-mic")


def _rooms_long_pitch_recipe() -> Recipe:
    """rooms-long with half of its room-degraded copies spoken a little higher or lower.

    Why: the members read a voice's absolute pitch, not its pitch against the speaker's own
    (docs/model-history.md, "Listening conditions"): on the unseen language, the share of
    high-arousal answers rises 2.1 points for every semitone a speaker's normal voice sits above
    the training speakers' of the same gender (converter speaker-pitch), and on RAVDESS a voice
    two semitones lower costs the log-mel member 8.2 points. A device meets voices pitched unlike
    the 80 training speakers' in every room and language. The training copies change pitch only
    with their formants and tempo (the cached speed changes, on half of them), never as a
    speaker with a higher or lower voice and the same vowels would. Here, of the copies made by
    ``room``, half are first transposed by a shift drawn uniformly within +-3 semitones, formants
    and timing kept (``room-pitch``, converter.augment.transpose_voice: Praat's PSOLA through
    parselmouth), before the room. The clean windows, half of each batch, keep their voices.
    The share and range are set before any run, not tuned. No device cost. The listening
    conditions ``pitch+2-wsola`` and ``pitch-2-wsola`` move the formants with the pitch, so they
    are not the family trained on.

    Rule, written before its first training was read: two fresh trainings, seeds 6 and 7, are
    read as a mean. On the development split's unseen language (BAVED's arousal, UA) the mean
    must gain at least 1.5 points over rooms-long's two trainings scored there (seed 4: 44.1 %,
    seed 5: 44.4 %; 44.25 -> 45.75 %), while RAVDESS clean, pooled clean and far-field over
    every corpus each lose at most 1 point against the mean of rooms-long's six development
    trainings (65.7, 59.6 and 52.9 %). Reported beside it and read by no rule: the listening
    conditions (pitch+2-wsola, pitch-2-wsola, pitch+2, telephone, mic) against rooms-long-seed5's.
    A member that passes goes to the folds and leave-one-corpus-out in a later stop, paired on
    every fold with the shipped recipe's PCEN member outputs (``converter pair``).

    Read (seeds 6 and 7, their mean): the unseen language 44.9 % (45.8 and 44.0; +0.7, the rule
    asks +1.5), RAVDESS clean 65.8 % (+0.1), pooled clean 58.7 % (-0.9), far-field over every
    corpus 51.1 % (51.8 and 50.3; -1.9, at most -1 allowed). It fails on two counts and stops: no
    fold was run. Through a voice two semitones lower with its formants (``pitch-2-wsola``) the two
    lose 8.6 and 5.8 points on RAVDESS against rooms-long-seed5's 8.2.
    """
    return replace(_rooms_long_recipe(), augmentation="room-pitch")


def _rooms_pcen_pitch_recipe() -> Recipe:
    """rooms-pcen with half of its room-degraded copies spoken a little higher or lower.

    Why: the same as rooms-long-pitch's, for the other member of the shipped ensemble, which
    loses more to a voice's pitch: on the development split a voice two semitones lower costs the
    PCEN member 7.0 points on RAVDESS, the same shift higher 2.3 (pooled over every corpus 4,
    nEMO 6), and its calm answers fall from 81 to 31 % with the lower voice. It is also the
    member that answers the unseen language best (48.3 and 48.7 %). Everything else is
    rooms-pcen's; ``room-pitch`` as in rooms-long-pitch (half of the room copies transposed
    within +-3 semitones, formants and timing kept). No device cost.

    Rule, written before any training of rooms-long-pitch or of this recipe was read: two fresh
    trainings, seeds 6 and 7, are read as a mean. On the unseen language the mean must gain at
    least 1.5 points over rooms-pcen's two trainings scored there (seed 4: 48.7 %, seed 5:
    48.3 %; 48.5 -> 50.0 %), while RAVDESS clean, pooled clean and far-field over every corpus
    each lose at most 1 point against the mean of rooms-pcen's five development trainings
    (rooms-pcen, -again, -seed2, -seed4, -seed5: 61.3, 57.8 and 51.2 %). Reported beside it and
    read by no rule: the listening conditions against rooms-pcen-seed5's. A member that passes
    goes to the folds and leave-one-corpus-out in a later stop, paired on every fold with the
    shipped recipe's log-mel member outputs (``converter pair``).

    Read (seeds 6 and 7, their mean): the unseen language 46.0 % (45.4 and 46.5; -2.5, the rule
    asks +1.5), with tired voices answered low 41 % of the time against 49 % (seed 5); RAVDESS
    clean 62.7 % (+1.4), pooled clean 58.1 % (+0.4), far-field over every corpus 52.1 % (+0.8).
    It fails and stops: no fold was run. Read by no rule, each beside rooms-long-seed5's log-mel
    outputs (rooms-long-pcen-pitch-seed6 and -seed7, against the shipped recipe's seed-5 pair):
    RAVDESS clean 71.1 and 71.5 % against 69.5 %, pooled 62.4 % against 62.1 %, far-field over
    every corpus 56.0 and 55.5 % against 56.3 %, the unseen language 45.1 and 44.7 % against
    46.0 %.
    """
    return replace(_rooms_pcen_recipe(), augmentation="room-pitch")


def _rooms_long_short_recipe() -> Recipe:
    """rooms-long whose shortened crops are normalized over themselves and go down to 0.4 s.

    Why: on the unseen language (BAVED, dev split) the shipped model answers a high-arousal
    emotion for most normal voices, and cutting the same words shorter moves its answers
    further that way (normal-voice words of at least 1.6 s cut to their middle 1 s: angry
    from 18 % to 32 % of the answers; to 0.5 s: 46 %). Part of that is a mismatch in the
    shared windowing: the device normalizes a short utterance over itself, while training
    shortened a fifth of its crops from features normalized over the whole, longer clip. Cut
    after the whole clip's normalization, as training cuts, the same 1 s stretches are
    answered about as at full length (angry 23 %; ``converter short-scaling``,
    models/results/short-scaling.md); the device's own normalization of them was never heard in
    training. And the daemon classifies utterances from 0.4 s, while training
    shortened to 1 s at the least. Here the shortened crops (still a fifth) are normalized
    over themselves (``short_normalized``) and drawn from 0.4 s (``min_frames`` 40) up to the
    window. Both settings follow the device, none was tuned; the same training time and
    device cost as rooms-long.
    """
    return replace(_rooms_long_recipe(), short_normalized=True, min_frames=40)


def _rooms_pcen_short_recipe() -> Recipe:
    """rooms-pcen whose shortened crops are computed as the device computes a short clip, from 0.4 s.

    Why: on the unseen language (BAVED, dev split) the shipped recipe's PCEN member trained again
    (``rooms-pcen-seed4``) answers a normal voice mid 4.8 % of the time (its log-mel member,
    ``rooms-long-seed4``, 30.8 %), and the shipped model answers words cut shorter more and
    more often angry. Training shortened a fifth of its crops
    by cutting rows of features computed over the whole, longer clip; the device computes a
    short utterance on its own. For log-mel the two differ only by the normalization, which
    ``short_normalized`` redoes on the cut rows (``rooms-long-short``: the unseen language +1.7
    and +1.9 points, normal voices answered angry less often, stopped by its rule on the usual
    scores). For PCEN they also differ by the smoother: the device starts it at the
    utterance's first frame, the cut rows carry the longer clip's running average (on the
    unseen language's words cut to 0.5 s, the PCEN block still differs by 0.28 standard
    deviations on average after normalizing the cut rows, 0.58 over the first ten frames).
    Here each shortened crop is computed from the clip's cached mel spectrogram by the device's
    own code (``short_from_mel``: a fresh smoother, normalized over the crop), drawn from 0.4 s
    (``min_frames`` 40, the daemon's shortest utterance) up to the window. Both settings follow
    the device, none was tuned; the same device cost as rooms-pcen.
    """
    return replace(_rooms_pcen_recipe(), short_from_mel=True, min_frames=40)


def _rooms_pcen_adv_recipe() -> Recipe:
    """rooms-pcen with a corpus-adversarial head: its pooled features are pushed to hide which corpus
    a clip comes from.

    Why: the product hears languages no corpus here holds, and that is where it is weakest: left
    out of training, a corpus scores 32-43 % (the shipped recipe's leave-one-corpus-out mean 37.2 %),
    where the corpora it trained on score 43-83 % on new speakers. The three corpora differ in
    language, speakers, microphones and codec as well as in emotion, and nothing in training
    stops the network from leaning on what marks a corpus: a Polish studio's colour can stand
    in for "this is a nEMO clip, so one of six classes", and such cues say nothing about a
    fourth language. A corpus discriminator on the pooled features, behind a gradient reversal,
    makes those cues costly (domain-adversarial training, Ganin & Lempitsky 2015; used for
    cross-corpus emotion by Abdelwahab & Busso 2018). The discriminator has one hidden layer
    of 64 units, its loss weight is 1 and the reversal rises to 1 on the paper's schedule;
    none of these was tuned. The PCEN member comes first because it trains in two thirds of
    the log-mel member's time. The head is cut off before export: the same device cost as
    rooms-pcen, and the same batches for the same seed.
    """
    return replace(_rooms_pcen_recipe(), corpus_adversary=1.0)


def _rooms_pcen_spk_recipe() -> Recipe:
    """rooms-pcen with a speaker-adversarial head: its pooled features are pushed to hide who speaks.

    Why: the product hears voices no corpus holds, and the one criterion the shipped model misses
    is new voices, RAVDESS actors it never heard (66.2 % on the folds against 67.9 %). The corpus
    adversary (rooms-pcen-adv) did not help the unseen language and cost pooled clean UA: hiding
    the corpus also hides what the corpora's emotions have in common with where they were
    recorded. A speaker is a finer thing to hide, and one every corpus shares: each of the
    training speakers (each speaker of each corpus one class) is told apart by a discriminator
    behind the same gradient reversal, so the network keeps less of what makes a voice that
    voice and more of what makes a state of voice that state. Speaker-adversarial training gave
    speaker-independent emotion recognition gains on IEMOCAP and a 250-speaker corpus (Tu et
    al. 2019, arXiv 1903.09606; Li et al., ICASSP 2020). The settings are the corpus
    adversary's (loss weight 1, reversal rising to 1, 64 hidden units), none tuned; the head is
    cut off before export: the same device cost as rooms-pcen, the same batches for the same seed.
    """
    return replace(_rooms_pcen_recipe(), speaker_adversary=1.0)


def _rooms_pcen_voices_recipe() -> Recipe:
    """rooms-pcen with other voices behind the speaker in a share of its training copies.

    Why: put one or four unseen voices 5-20 dB behind the speaker (``--conditions talker,babble``),
    every PCEN member loses 4-5 points pooled and ASED 14-15, where held-out noise at the same SNR
    costs 0.3-2.4; the log-mel member loses about what noise costs it. A TV or a room of people is
    such a background, and no training copy had one: the noise recordings are street and
    household sounds. Here, of the copies given real noise (80 %), 40 % hear 1-4 voices of the
    run's training speakers instead, at the same SNR (0-25 dB), each a stream of that
    speaker's clips. Everything else is rooms-pcen's. The shares are set, not tuned.

    Rule, written before its first training was read: one development training with seed 5 is
    read against rooms-pcen-seed5 (the same recipe without voices, the same seed). It is worth a
    second training if, pooled over every corpus, ``babble`` gains at least 2 points and
    ``talker`` at least 1, while clean, RAVDESS clean and far-field over every corpus each lose
    at most 1. One training cannot ship it (the member rules ask for two).

    Read (seed 5, pooled, against rooms-pcen-seed5): babble 52.8 against 53.2 %, talker 52.8
    against 52.4 %, clean 57.1 against 57.1 %, RAVDESS clean 60.2 against 62.1 %, far-field over
    every corpus 49.9 against 51.6 %: it fails the rule, and was stopped after one training.
    """
    return replace(_rooms_pcen_recipe(), augmentation="room-voices")


#: Recipe name -> (recipe, corpora it trains on). ``baseline`` is the first shipped model's.
RECIPES: Dict[str, Tuple[Callable[[], Recipe], Tuple[str, ...]]] = {
    "baseline": (Recipe, ("ravdess",)),
    "rooms": (_rooms_recipe, ("ravdess", "nemo", "ased")),
    "rooms-ravdess-half": (_rooms_ravdess_half_recipe, ("ravdess", "nemo", "ased")),
    "rooms-varied": (_rooms_varied_recipe, ("ravdess", "nemo", "ased")),
    "rooms-wide": (_rooms_wide_recipe, ("ravdess", "nemo", "ased")),
    "rooms-arousal": (_rooms_arousal_recipe, ("ravdess", "nemo", "ased", "baved")),
    "rooms-cmn": (_rooms_cmn_recipe, ("ravdess", "nemo", "ased")),
    "rooms-sim": (_rooms_sim_recipe, ("ravdess", "nemo", "ased")),
    "rooms-twins": (_rooms_twins_recipe, ("ravdess", "nemo", "ased")),
    "rooms-twins-b64": (_rooms_twins_b64_recipe, ("ravdess", "nemo", "ased")),
    "rooms-long": (_rooms_long_recipe, ("ravdess", "nemo", "ased")),
    "rooms-degraded": (_rooms_degraded_recipe, ("ravdess", "nemo", "ased")),
    "rooms-attention": (_rooms_attention_recipe, ("ravdess", "nemo", "ased")),
    "rooms-wide-long": (_rooms_wide_long_recipe, ("ravdess", "nemo", "ased")),
    "rooms-pcen": (_rooms_pcen_recipe, ("ravdess", "nemo", "ased")),
    "rooms-pcen-long": (_rooms_pcen_long_recipe, ("ravdess", "nemo", "ased")),
    "rooms-long-ravdess-more": (_rooms_long_ravdess_more_recipe, ("ravdess", "nemo", "ased")),
    "rooms-pcen-db": (_rooms_pcen_db_recipe, ("ravdess", "nemo", "ased")),
    "rooms-pcen-arousal": (_rooms_pcen_arousal_recipe, ("ravdess", "nemo", "ased", "baved")),
    "rooms-long-warp": (_rooms_long_warp_recipe, ("ravdess", "nemo", "ased")),
    "rooms-long-ema": (_rooms_long_ema_recipe, ("ravdess", "nemo", "ased")),
    "rooms-long-mic": (_rooms_long_mic_recipe, ("ravdess", "nemo", "ased")),
    "rooms-long-pitch": (_rooms_long_pitch_recipe, ("ravdess", "nemo", "ased")),
    "rooms-pcen-pitch": (_rooms_pcen_pitch_recipe, ("ravdess", "nemo", "ased")),
    "rooms-long-short": (_rooms_long_short_recipe, ("ravdess", "nemo", "ased")),
    "rooms-pcen-short": (_rooms_pcen_short_recipe, ("ravdess", "nemo", "ased")),
    "rooms-pcen-adv": (_rooms_pcen_adv_recipe, ("ravdess", "nemo", "ased")),
    "rooms-pcen-spk": (_rooms_pcen_spk_recipe, ("ravdess", "nemo", "ased")),
    "rooms-pcen-voices": (_rooms_pcen_voices_recipe, ("ravdess", "nemo", "ased")),
    "rooms-db-distilled": (_rooms_db_distilled_recipe, ("ravdess", "nemo", "ased")),
}
#: Ensemble name -> member recipes: each member's model of the same run, logits averaged in one
#: graph (:mod:`converter.ensemble`).
ENSEMBLES: Dict[str, Tuple[str, ...]] = {
    "rooms-pair": ("rooms-ravdess-half", "rooms-wide"),
    # a log-mel member and a PCEN member: PCEN keeps more through reverberation, log-mel through
    # noise (models/results/farfield-parts-*), so they should err on different clips
    "rooms-half-pcen": ("rooms-ravdess-half", "rooms-pcen"),
    "rooms-long-pcen": ("rooms-long", "rooms-pcen"),
    "rooms-wide-long-pcen": ("rooms-wide-long", "rooms-pcen"),
    # rooms-long-pcen with the log-mel member weighted more: its one unmet criterion is clean
    # RAVDESS, where the log-mel member is the stronger; the weight is chosen on the dev split
    "rooms-long-pcen-w50": ("rooms-long", "rooms-pcen"),
    "rooms-long-pcen-w60": ("rooms-long", "rooms-pcen"),
    "rooms-long-pcen-w70": ("rooms-long", "rooms-pcen"),
    "rooms-long-pcen-w80": ("rooms-long", "rooms-pcen"),
    # rooms-long-pcen with its weaker member, PCEN, trained as long as the log-mel one
    "rooms-long-pcen-long": ("rooms-long", "rooms-pcen-long"),
    # rooms-long-pcen with a log-mel member that hears more RAVDESS
    "rooms-long-ravdess-more-pcen": ("rooms-long-ravdess-more", "rooms-pcen"),
    # rooms-long-pcen with its PCEN member hearing log-mel too, as a second channel
    "rooms-long-pcen-db": ("rooms-long", "rooms-pcen-db"),
    # the shipped ensemble's two members and the member that hears both views, all three kept:
    # no new training, one more branch in the graph
    "rooms-long-pcen-trio": ("rooms-long", "rooms-pcen", "rooms-pcen-db"),
    # rooms-long-pcen with its PCEN member also learning arousal from BAVED
    "rooms-long-pcen-arousal": ("rooms-long", "rooms-pcen-arousal"),
    # rooms-long-pcen with its log-mel member hearing warped voices in training
    "rooms-long-warp-pcen": ("rooms-long-warp", "rooms-pcen"),
    # rooms-long-pcen with a log-mel member whose final weights are a moving average
    "rooms-long-ema-pcen": ("rooms-long-ema", "rooms-pcen"),
    # rooms-long-pcen with its log-mel member hearing other microphones in training
    "rooms-long-mic-pcen": ("rooms-long-mic", "rooms-pcen"),
    # rooms-long-pcen with its log-mel member hearing voices pitched higher and lower in training
    "rooms-long-pitch-pcen": ("rooms-long-pitch", "rooms-pcen"),
    # rooms-long-pcen with its PCEN member hearing voices pitched higher and lower in training
    "rooms-long-pcen-pitch": ("rooms-long", "rooms-pcen-pitch"),
    # rooms-long-pcen with a PCEN member whose shortened crops are computed as the device
    # computes a short clip
    "rooms-long-pcen-short": ("rooms-long", "rooms-pcen-short"),
    # both members with their shortened crops heard as the device hears a short clip
    "rooms-long-short-pcen-short": ("rooms-long-short", "rooms-pcen-short"),
    # the shipped log-mel member with a PCEN member trained against a corpus discriminator
    "rooms-long-pcen-adv": ("rooms-long", "rooms-pcen-adv"),
    # the shipped log-mel member with a PCEN member trained against a speaker discriminator
    "rooms-long-pcen-spk": ("rooms-long", "rooms-pcen-spk"),
}
#: Ensemble name -> its members' weights in the mean of logits (in ENSEMBLES' order); an
#: ensemble not listed takes the plain mean.
ENSEMBLE_WEIGHTS: Dict[str, Tuple[float, ...]] = {
    "rooms-long-pcen-w50": (0.5, 0.5),  # the plain mean: the weight grid's reference on the same members
    "rooms-long-pcen-w60": (0.6, 0.4),
    "rooms-long-pcen-w70": (0.7, 0.3),
    "rooms-long-pcen-w80": (0.8, 0.2),
}
#: One line per recipe for the report: what it is (the recipe functions' docstrings say why).
DESCRIPTIONS: Dict[str, str] = {
    "baseline": "the first shipped model's recipe: RAVDESS only, studio augmentation (speed, synthetic "
                "reverberation, coloured noise at 10-35 dB SNR), 100 epochs",
    "rooms": "RAVDESS + nEMO + ASED drawn uniformly (corpus, then class), masked multi-corpus loss, measured "
             "rooms and real noise at 0-25 dB SNR on 60 % of windows, Opus round trip on RAVDESS, 5000 batches",
    "rooms-v1": "first try of rooms (4000 batches, 25 % clean windows, calm masked out where a corpus lacks it)",
    "rooms-ravdess-half": "rooms with RAVDESS drawn for half the batches (2 : 1 : 1), 50 % clean windows and "
                          "8000 batches",
    "rooms-varied": "rooms-ravdess-half with six room-degraded copies per clip instead of three",
    "rooms-wide": "rooms-ravdess-half with a wider network (32, 48, 64, 96, 128 channels)",
    "rooms-pair": "rooms-ravdess-half and rooms-wide, each trained on the run's clips, their logits averaged in one "
                  "int8 graph",
    "rooms-arousal": "rooms-ravdess-half plus an auxiliary arousal head trained on BAVED (Arabic, low/mid/high; "
                     "1/9 of the draws, 9000 batches), dropped from the exported model",
    "rooms-cmn": "rooms-ravdess-half with each mel band's mean over the window subtracted inside the network "
                 "(cepstral mean normalisation on log-mel)",
    "rooms-sim": "rooms-ravdess-half with simulated shoebox rooms (pyroomacoustics: 3-10 m, RT60 0.15-1.0 s, talker "
                 "0.5-5 m away) for 35 % of the room-degraded copies, measured rooms for 45 %",
    "rooms-twins": "rooms-ravdess-half with every batch as clean/degraded twins of the same windows, the degraded "
                   "twin also pulled towards the clean one's prediction (KL, weight 1)",
    "rooms-twins-b64": "rooms-twins with 32 clips (64 windows) a batch for 4000 batches: as many clips drawn as "
                       "rooms-ravdess-half",
    "rooms-long": "rooms-ravdess-half trained for 12000 batches instead of 8000",
    "rooms-degraded": "rooms-ravdess-half with 30 % clean windows instead of 50 % (70 % room-degraded copies)",
    "rooms-attention": "rooms-ravdess-half with a learned weighted mean over time (softmax attention, one weight "
                       "per frame) in place of the maximum over time",
    "rooms-wide-long": "rooms-wide trained for 12000 batches instead of 8000",
    "rooms-half-pcen": "rooms-ravdess-half (log-mel) and rooms-pcen (PCEN), logits averaged in one int8 graph that "
                       "hears both views of one mel spectrogram (edge-db-pcen)",
    "rooms-long-pcen": "rooms-long (log-mel) and rooms-pcen (PCEN), logits averaged as in rooms-half-pcen",
    "rooms-wide-long-pcen": "rooms-wide-long (log-mel) and rooms-pcen (PCEN), logits averaged as in "
                            "rooms-half-pcen",
    "rooms-long-pcen-w50": "rooms-long-pcen (the plain mean) on members trained again and kept: the weights' "
                           "reference on the same two models",
    "rooms-long-pcen-w60": "rooms-long-pcen with the members' logits weighted 0.6 (log-mel) and 0.4 (PCEN)",
    "rooms-long-pcen-w70": "rooms-long-pcen with the members' logits weighted 0.7 (log-mel) and 0.3 (PCEN)",
    "rooms-long-pcen-w80": "rooms-long-pcen with the members' logits weighted 0.8 (log-mel) and 0.2 (PCEN)",
    "rooms-pcen": "rooms-ravdess-half on PCEN features (per-channel energy normalization: 0.4 s smoother, gain "
                  "0.98, bias 2, root 1/2) in place of log-mel",
    "rooms-pcen-long": "rooms-pcen trained for 12000 batches instead of 8000",
    "rooms-long-pcen-long": "rooms-long (log-mel) and rooms-pcen-long (PCEN), logits averaged as in rooms-half-pcen",
    "rooms-long-ravdess-more": "rooms-long with RAVDESS drawn for two thirds of the batches (4 : 1 : 1) instead of "
                               "half",
    "rooms-long-ravdess-more-pcen": "rooms-long-ravdess-more (log-mel) and rooms-pcen (PCEN), logits averaged as in "
                                    "rooms-half-pcen",
    "rooms-pcen-db": "rooms-pcen hearing PCEN and log-mel of the same bands as two input channels "
                     "(edge-db-pcen)",
    "rooms-long-pcen-db": "rooms-long (log-mel) and rooms-pcen-db (PCEN and log-mel), logits averaged as in "
                          "rooms-half-pcen",
    "rooms-long-pcen-trio": "rooms-long (log-mel), rooms-pcen (PCEN) and rooms-pcen-db (PCEN and log-mel), the "
                            "three members' logits averaged in one graph",
    "rooms-pcen-arousal": "rooms-pcen plus an auxiliary arousal head trained on BAVED (1/9 of the draws, 9000 "
                          "batches; the head is not exported)",
    "rooms-long-pcen-arousal": "rooms-long (log-mel) and rooms-pcen-arousal (PCEN, arousal head in training), "
                               "logits averaged as in rooms-half-pcen",
    "rooms-long-warp": "rooms-long with every training window's mel axis warped by a factor drawn from 0.9-1.1 "
                       "in Hz (a vocal-tract-length perturbation; the device hears no warp)",
    "rooms-long-warp-pcen": "rooms-long-warp (log-mel) and rooms-pcen (PCEN), logits averaged as in "
                            "rooms-half-pcen",
    "rooms-long-ema": "rooms-long with its final weights an exponential moving average over training (momentum "
                      "0.999, about the last 1000 batches)",
    "rooms-long-ema-pcen": "rooms-long-ema (log-mel) and rooms-pcen (PCEN), logits averaged as in rooms-half-pcen",
    "rooms-long-mic": "rooms-long with half of its room-degraded copies through another microphone (a random "
                      "7-band equalizer at +-6 dB, a 50-400 Hz high-pass, on half of them a 3.5-7.5 kHz "
                      "low-pass; audiomentations)",
    "rooms-long-mic-pcen": "rooms-long-mic (log-mel) and rooms-pcen (PCEN), logits averaged as in rooms-half-pcen",
    "rooms-long-short": "rooms-long with its shortened crops normalized over themselves, as the device normalizes "
                        "a short utterance, and drawn from 0.4 s",
    "rooms-pcen-short": "rooms-pcen with its shortened crops computed from the clip's mel spectrogram as the "
                        "device computes a short utterance (PCEN smoothed from the crop's first frame, "
                        "normalized over the crop), drawn from 0.4 s",
    "rooms-long-pcen-short": "rooms-long (log-mel) and rooms-pcen-short (PCEN), logits averaged as in "
                             "rooms-half-pcen",
    "rooms-long-short-pcen-short": "rooms-long-short (log-mel) and rooms-pcen-short (PCEN), logits averaged as in "
                                   "rooms-half-pcen",
    "rooms-pcen-adv": "rooms-pcen with a corpus discriminator on its pooled features behind a gradient reversal "
                      "(domain-adversarial training: the features are pushed to hide which corpus a clip comes "
                      "from; reversal rising to 1, the head not exported)",
    "rooms-long-pcen-adv": "rooms-long (log-mel) and rooms-pcen-adv (PCEN), logits averaged as in rooms-half-pcen",
    "rooms-pcen-spk": "rooms-pcen with a discriminator of the training speakers on its pooled features behind a "
                      "gradient reversal (speaker-adversarial training: the features are pushed to hide who speaks; "
                      "the corpus adversary's settings, the head not exported)",
    "rooms-long-pcen-spk": "rooms-long (log-mel) and rooms-pcen-spk (PCEN), logits averaged as in rooms-half-pcen",
    "rooms-pcen-voices": "rooms-pcen with other voices behind the speaker: of the training copies given real noise, "
                         "40 % hear 1-4 voices of the run's training speakers instead, at the same SNR",
    "rooms-db-distilled": "rooms-pcen-db taught by rooms-long-pcen's members of the same run: their averaged "
                          "logits a second target (knowledge distillation, weight 1, temperature 2)",
}


def run_names(corpora: Sequence[str]) -> List[str]:
    """Every run a recipe trained on ``corpora`` can do, in the order they are run."""
    names = ["dev"]
    if "ravdess" in corpora:
        names += [f"cv{i}" for i in range(1, 6)]
    if len(corpora) > 1:
        names += [f"loco-{c}" for c in LOCO_CORPORA if c in corpora]
    return names


# -- planning ---------------------------------------------------------------------------------


@dataclass
class RunPlan:
    """Which clips train, calibrate and test one run, and how the test is scored."""

    name: str
    train: List[Item]
    calibration: List[Item]
    test: List[Item]
    classes: Dict[str, Tuple[str, ...]]  # per test corpus: the classes of the restricted argmax
    farfield: bool  # also score the far-field version of the RAVDESS test clips
    #: arousal-only clips of a corpus the recipe never hears, scored by arousal level (dev run only)
    unseen_arousal: List[Item] = field(default_factory=list)

    @property
    def farfield_test(self) -> List[Item]:
        """The test clips scored far-field too: the RAVDESS ones, when the run scores far-field."""
        return [it for it in self.test if it.corpus == "ravdess"] if self.farfield else []

    @property
    def farfield_classes(self) -> Dict[str, Tuple[str, ...]]:
        """The far-field clips' restricted argmax: RAVDESS's classes."""
        return {"ravdess": self.classes.get("ravdess", ())}


def _pick(speakers: Sequence[str], count: int, salt: str) -> List[str]:
    """``count`` speakers chosen by a stable hash (not by order, not by a test result)."""
    ranked = sorted(set(speakers), key=lambda s: zlib.crc32(f"{salt}|{s}".encode("utf-8")))
    return sorted(ranked[:count])


def scored_classes(test_corpus: str, train_classes: Dict[str, Tuple[str, ...]],
                   all_classes: Dict[str, Tuple[str, ...]]) -> Tuple[str, ...]:
    """The test corpus's classes that training also has (calm counts as neutral)."""
    taught = {c for name, cls in train_classes.items() for c in cls}
    own = all_classes[test_corpus]
    out = [c for c in own if c in taught or (c == "neutral" and "calm" in taught)]
    if "calm" in out and "calm" not in taught:
        out.remove("calm")
    return tuple(out)


def plan_run(name: str, items: Sequence[Item], corpora: Sequence[str]) -> RunPlan:
    """Which clips train, calibrate and test run ``name`` of a recipe trained on ``corpora``.

    Arousal-only clips (BAVED) of those corpora only ever train (an arousal head): they join
    the training clips of every run and are never calibration or test clips. Those of a corpus
    the recipe does not train on are the dev run's unseen language, scored by arousal alone.
    """
    labelled = [it for it in items if it.corpus in corpora and it.label is not None]
    arousal_only = [it for it in items if it.corpus in corpora and it.label is None and it.arousal is not None]
    if name == "unseen":
        return RunPlan(name, labelled + arousal_only, [], [], {}, farfield=False,
                       unseen_arousal=unseen_arousal_items(items, corpora))
    plan = _plan_labelled(name, labelled, corpora)
    plan.train += arousal_only
    if name == "dev":
        plan.unseen_arousal = unseen_arousal_items(items, corpora)
    return plan


def _plan_labelled(name: str, labelled: List[Item], corpora: Sequence[str]) -> RunPlan:
    classes = corpus_classes(labelled)
    if name == "dev":
        dev = {s for c in corpora for s in DEV_SPEAKERS.get(c, ())}
        test = [it for it in labelled if it.speaker in dev]
        train = [it for it in labelled if it.speaker not in dev]
        return RunPlan(name, train, [], test, {c: classes[c] for c in corpora if c in classes}, farfield=True)
    if name.startswith("cv"):
        fold = EMOBOX_FOLDS[int(name[2:]) - 1]
        test = [it for it in labelled if it.corpus == "ravdess" and it.speaker in fold]
        rest = [it for it in labelled if not (it.corpus == "ravdess" and it.speaker in fold)]
        test_classes = {"ravdess": classes["ravdess"]}
        farfield = True
    elif name.startswith("loco-"):
        left_out = name[5:]
        test = [it for it in labelled if it.corpus == left_out]
        rest = [it for it in labelled if it.corpus != left_out]
        test_classes = {left_out: scored_classes(left_out, corpus_classes(rest), classes)}
        farfield = False
    else:
        raise ValueError(f"unknown run {name!r}; runs are dev, cv1..cv5, loco-<corpus>")
    held = set()
    for corpus in sorted({it.corpus for it in rest}):
        speakers = [it.speaker for it in rest if it.corpus == corpus]
        held |= set(_pick(speakers, CALIBRATION_SPEAKERS.get(corpus, 1), f"calibration|{name}"))
    calibration = [it for it in rest if it.speaker in held]
    train = [it for it in rest if it.speaker not in held]
    return RunPlan(name, train, calibration, test, test_classes, farfield)


# -- scoring ----------------------------------------------------------------------------------


def restricted_predictions(probs: np.ndarray, classes: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
    """Argmax over ``classes`` (calm added to neutral where calm is not one of them).

    Returns ``(predicted class indices, renormalized probabilities over the 8 labels with
    zeros outside classes)``; the second feeds calibration.
    """
    p = np.array(probs, dtype=np.float64, copy=True)
    neutral, calm = EMOTIONS.index("neutral"), EMOTIONS.index("calm")
    if "neutral" in classes and "calm" not in classes:
        p[:, neutral] += p[:, calm]
    allowed = np.array([EMOTIONS.index(c) for c in classes])
    kept = np.zeros_like(p)
    kept[:, allowed] = p[:, allowed]
    kept /= np.maximum(kept.sum(axis=1, keepdims=True), 1e-12)
    return allowed[p[:, allowed].argmax(axis=1)], kept


def scored_labels(items: Sequence[Item], classes: Sequence[str]) -> np.ndarray:
    """True class index per clip, calm folded into neutral where calm is not scored, -1 = dropped."""
    out = []
    for it in items:
        label = it.label
        if label not in classes and label == "calm" and "neutral" in classes:
            label = "neutral"
        out.append(EMOTIONS.index(label) if label in classes else -1)
    return np.array(out, dtype=np.int64)


def window_outputs(predict: Callable[[np.ndarray], np.ndarray], feats: Sequence[np.ndarray], recipe: Recipe
                   ) -> List[np.ndarray]:
    """The model's raw output (logits or probabilities) per window, one array per clip."""
    return clip_window_outputs(predict, feats, recipe.window_frames, recipe.hop_frames, feature_blocks(recipe))


def clip_probabilities(outputs: Sequence[np.ndarray], logits: bool, temperature: float = 1.0) -> np.ndarray:
    """Clip probability = mean of window probabilities, as on the device (softmax of logits / T)."""
    rows = []
    for out in outputs:
        z = out if logits else np.log(np.maximum(out, 1e-6))
        rows.append(softmax(z / temperature).mean(axis=0))
    return np.stack(rows)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE of the top-1 probability (equal-width bins, weighted by clip count)."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


def score(outputs: Sequence[np.ndarray], items: Sequence[Item], classes: Dict[str, Tuple[str, ...]],
          logits: bool, temperature: float = 1.0) -> Dict[str, object]:
    """UA, WA, confusion and ECE of clips, pooled and per corpus (restricted argmax per corpus)."""
    probs = clip_probabilities(outputs, logits, temperature)
    parts = {}
    for corpus, cls in classes.items():
        idx = [i for i, it in enumerate(items) if it.corpus == corpus]
        if not idx:
            continue
        labels = scored_labels([items[i] for i in idx], cls)
        pred, renorm = restricted_predictions(probs[idx], cls)
        keep = labels >= 0
        parts[corpus] = (labels[keep], pred[keep], renorm[keep])
    pooled = _metrics(*(np.concatenate([p[k] for p in parts.values()]) for k in range(3)))
    pooled["classes"] = {k: list(v) for k, v in classes.items()}
    if len(parts) > 1:
        pooled["by_corpus"] = {c: {k: v for k, v in _metrics(*p).items() if k != "confusion"}
                               for c, p in parts.items()}
    return pooled


def _metrics(y_true: np.ndarray, y_pred: np.ndarray, probs: np.ndarray) -> Dict[str, object]:
    cm = confusion(y_true, y_pred)
    ua, wa = ua_wa(cm)
    return {"clips": int(len(y_true)), "ua": ua, "wa": wa, "recall": recall_by_class(cm, EMOTIONS),
            "confusion": cm.tolist(), "ece": expected_calibration_error(probs, y_true)}


def fit_temperature(outputs: Sequence[np.ndarray], items: Sequence[Item], logits: bool) -> float:
    """The temperature that minimizes the clips' NLL, each over its own corpus's classes."""
    classes = corpus_classes(items)
    labels = np.array([it.label_index for it in items])
    best = (np.inf, 1.0)
    for t in TEMPERATURES:
        probs = clip_probabilities(outputs, logits, float(t))
        nll = 0.0
        for corpus, cls in classes.items():
            idx = [i for i, it in enumerate(items) if it.corpus == corpus]
            _, renorm = restricted_predictions(probs[idx], cls)
            nll -= float(np.sum(np.log(np.maximum(renorm[np.arange(len(idx)), labels[idx]], 1e-12))))
        if nll < best[0]:
            best = (nll, float(t))
    return best[1]


# -- running ----------------------------------------------------------------------------------


@dataclass
class Scorer:
    """Scores one model (a predict function over windows) on a run's test and calibration clips."""

    plan: RunPlan
    recipe: Recipe
    config: object
    cache_dir: Optional[Path] = None

    def features(self, items: Sequence[Item], farfield: bool = False, draw: int = 0,
                 condition: str = "") -> List[np.ndarray]:
        if not items:
            return []
        data = load_clipset(items, self.config, 0, self.cache_dir, seed=draw,
                            treatment=Treatment(farfield=farfield, condition=condition))
        return [f[0] for f in data.feats]

    def conditions(self, predict: Callable[[np.ndarray], np.ndarray], logits: bool,
                   names: Sequence[str]) -> Dict[str, object]:
        """Scores of the run's test clips under each named condition (:mod:`converter.conditions`)."""
        plan = self.plan
        if not plan.test:
            return {}
        return {name: score(window_outputs(predict, self.features(plan.test, condition=name), self.recipe),
                            plan.test, plan.classes, logits) for name in names}

    def unseen_arousal_conditions(self, predict: Callable[[np.ndarray], np.ndarray], logits: bool,
                                  names: Sequence[str]) -> Dict[str, object]:
        """Arousal scores of the plan's unseen-language clips under each named condition (but those
        whose sound is taken from the unseen language itself, :data:`converter.conditions.BORROWS_FROM`)."""
        from .conditions import BORROWS_FROM

        items = self.plan.unseen_arousal
        if not items:
            return {}
        corpora = {it.corpus for it in items}
        return {name: score_arousal(clip_probabilities(
                    window_outputs(predict, self.features(items, condition=name), self.recipe), logits), items)
                for name in names if BORROWS_FROM.get(name) not in corpora}

    def farfield_every_corpus(self, predict: Callable[[np.ndarray], np.ndarray], logits: bool,
                              draws: int = DEV_FARFIELD_DRAWS, keep: Optional[Dict[str, ScoredSet]] = None
                              ) -> Dict[str, object]:
        """Far-field scores of every test clip, ``draws`` rooms, noises and levels each, pooled.

        Each (clip, draw) counts as one clip; per corpus, as for the clean clips. ``keep``
        receives the window outputs (set ``farfield_all``, the draws one after the other).
        """
        items, outputs = [], []
        for draw in range(draws):
            outputs += window_outputs(predict, self.features(self.plan.test, farfield=True, draw=draw), self.recipe)
            items += list(self.plan.test)
        if keep is not None:
            keep["farfield_all"] = ScoredSet.of(items, outputs)
        return {"draws": draws, **score(outputs, items, self.plan.classes, logits)}

    def unseen_arousal(self, predict: Callable[[np.ndarray], np.ndarray], logits: bool,
                       keep: Optional[Dict[str, ScoredSet]] = None) -> Dict[str, object]:
        """Arousal scores of the plan's unseen-language clips (:mod:`converter.unseen_arousal`);
        ``keep`` receives their window outputs (set ``unseen_arousal``)."""
        items = self.plan.unseen_arousal
        outputs = window_outputs(predict, self.features(items), self.recipe)
        if keep is not None:
            keep["unseen_arousal"] = ScoredSet.of(items, outputs)
        return score_arousal(clip_probabilities(outputs, logits), items)

    def evaluate(self, predict: Callable[[np.ndarray], np.ndarray], logits: bool,
                 calibrate: bool = True, keep: Optional[Dict[str, ScoredSet]] = None) -> Dict[str, object]:
        """Scores of one model on the run's clean test clips, their far-field copies (RAVDESS; on
        the dev run every corpus too) and, with ``calibrate``, a temperature fitted on the
        calibration speakers. ``keep`` receives the window outputs of each scored set
        (:mod:`converter.run_outputs`), so the run's results file can keep them."""
        plan = self.plan
        result: Dict[str, object] = {}
        if plan.unseen_arousal:
            result["unseen_arousal"] = self.unseen_arousal(predict, logits, keep=keep)
        if not plan.test:  # the ``unseen`` run: nothing else to score
            return result
        test_out = window_outputs(predict, self.features(plan.test), self.recipe)
        result["clean"] = score(test_out, plan.test, plan.classes, logits)
        far_items = plan.farfield_test
        far_out = window_outputs(predict, self.features(far_items, farfield=True), self.recipe) if far_items else []
        if keep is not None:
            keep["clean"] = ScoredSet.of(plan.test, test_out)
            if far_items:
                keep["farfield"] = ScoredSet.of(far_items, far_out)
        if far_items:
            result["farfield"] = score(far_out, far_items, plan.farfield_classes, logits)
        if plan.name == "dev":
            result["farfield_all"] = self.farfield_every_corpus(predict, logits, keep=keep)
        if calibrate and plan.calibration:
            cal_out = window_outputs(predict, self.features(plan.calibration), self.recipe)
            t = fit_temperature(cal_out, plan.calibration, logits)
            result["calibration"] = {
                "temperature": t,
                "speakers": sorted({it.speaker for it in plan.calibration}),
                "ece_before": result["clean"]["ece"],
                "ece_after": score(test_out, plan.test, plan.classes, logits, t)["ece"],
            }
            if far_items:
                result["calibration"]["farfield_ece_after"] = score(
                    far_out, far_items, plan.farfield_classes, logits, t)["ece"]
        return result


def member_scorer(plan: RunPlan, recipe: Recipe, member: Recipe, cache_dir: Optional[Path] = None) -> Scorer:
    """A :class:`Scorer` of one ensemble member alone, on its own features (``recipe``: the ensemble's).

    Why not the ensemble's recipe: windows of a clip shorter than the window are padded block by
    block of the features the recipe names, and a log-mel member's 64 columns are one block, not
    two halves of the ensemble's log-mel + PCEN. With the ensemble's recipe, such a clip's window
    was padded with two minima, one per half of its bands: not what its own protocol run scores.
    """
    from edge_ser.features import preset

    return Scorer(plan, replace(recipe, features=member.features), preset(member.features), cache_dir)


def recipe_corpora(name: str) -> Tuple[str, ...]:
    """The corpora a recipe, or an ensemble's members, train on.

    An ensemble's members must train on the same scored corpora (:data:`LOCO_CORPORA`), or its
    runs would hold out different speakers for each; one member may train on more material
    besides (BAVED's arousal-only clips for an arousal head), which joins only the training
    clips of a run and which a member without an arousal head leaves out.
    """
    if name in ENSEMBLES:
        members = [RECIPES[m][1] for m in ENSEMBLES[name]]
        scored = {tuple(c for c in corpora if c in LOCO_CORPORA) for corpora in members}
        if len(scored) != 1:
            raise ValueError(f"ensemble {name!r}: members train on different corpora {sorted(scored)}")
        union: List[str] = []
        for corpora in members:
            union += [c for c in corpora if c not in union]
        return tuple(union)
    return RECIPES[name][1]


def _make_recipe(name: str, steps: Optional[int], seed: Optional[int] = None) -> Recipe:
    recipe = RECIPES[name][0]()
    if steps is not None:
        recipe = replace(recipe, steps=steps, epochs=max(recipe.warmup_epochs + 1, steps))
    if seed is not None:
        recipe = replace(recipe, seed=seed)
    return recipe


def seeded_label(name: str, seed: Optional[int]) -> str:
    """Where a recipe's results and models go: its name, or ``<name>-seed<N>`` for another seed.

    A recipe trained with a seed other than its own is a separate row (the report sets it
    beside the recipe's own): the spread between seeds is how far one run can be trusted.
    """
    return name if seed is None else f"{name}-seed{seed}"


def training_treatment(recipe: Recipe, items: Sequence[Item], sample_rate: int) -> Treatment:
    """The audio treatment of a recipe's training clips ``items``. ``room-voices`` takes its
    background voices from these very clips' speakers (:func:`converter.augment.register_voices`),
    so no run ever hears a held-out speaker, or an arousal-only corpus, behind its speakers."""
    from .augment import register_voices

    augmentation = recipe.augmentation
    if augmentation == "room-voices":
        labelled = [it for it in items if it.label is not None]
        augmentation = f"room-voices:{register_voices(labelled, sample_rate)}"
    return Treatment(augmentation=augmentation, opus_wav=recipe.opus_wav)


def _train_run(recipe: Recipe, plan: RunPlan, config, cache_dir: Optional[Path], log,
               checkpoint: Optional[Path] = None, teacher: Optional[object] = None) -> Tuple[object, ClipSet, float]:
    """Train ``recipe`` on a run's training clips: (model, its training clips, seconds).

    ``checkpoint``: where the training's state is kept after every round, so a process ended
    midway resumes this run's training, not only the runs after it. ``teacher``: the model a
    distilled recipe learns from (:func:`_teacher_model`).
    """
    from .train import train_model

    treatment = training_treatment(recipe, plan.train, config.sample_rate)
    train = load_clipset(plan.train, config, recipe.aug_variants, cache_dir, treatment=treatment,
                         with_mel_db=recipe.short_from_mel)
    result = train_model(train, None, recipe, log=log, checkpoint=checkpoint, teacher=teacher)
    return result.model, train, result.seconds


def _teacher_model(
    recipe: Recipe, plan: RunPlan, cache_dir: Optional[Path], models_dir: Optional[Path],
    steps: Optional[int], log, seed: Optional[int] = None,
) -> Tuple[Optional[object], Dict[str, Dict[str, object]]]:
    """The ensemble that teaches ``recipe`` on run ``plan.name`` and what its members were (their
    sources and digests, for the row); (None, {}) for a recipe without a teacher.

    The members are ``recipe.teacher``'s models of this very run, loaded from ``models_dir`` or
    trained there (:func:`_member_models`, with the same ``seed``), so a teacher has heard exactly
    the student's training speakers and never the run's test speakers. The ensemble must hear the
    features the student hears: each training window goes to both.
    """
    if not recipe.teacher:
        return None, {}
    if recipe.teacher not in ENSEMBLES:
        raise ValueError(f"teacher {recipe.teacher!r} is not an ensemble; known: {', '.join(ENSEMBLES)}")
    member_recipes = [_make_recipe(m, steps, seed) for m in ENSEMBLES[recipe.teacher]]
    heard = ensemble_features(member_recipes)
    if heard != recipe.features:
        raise ValueError(f"teacher {recipe.teacher!r} hears {heard} features, its student {recipe.features}")
    models, info = _member_models(recipe.teacher, plan, cache_dir, models_dir, steps, log, seed)
    return ensemble_model(models, member_recipes, ensemble_weights(recipe.teacher)), info


def ensemble_features(recipes: Sequence[Recipe]) -> str:
    """The feature preset an ensemble of ``recipes`` hears: theirs when they agree, else the
    preset whose blocks are their presets' blocks, each once, in the members' order
    (``edge-db-pcen`` for a log-mel member then a PCEN member, or then a member hearing both)."""
    from edge_ser.features import PRESETS

    names = [r.features for r in recipes]
    if len(set(names)) == 1:
        return names[0]
    wanted: list = []
    for name in names:
        wanted += [block for block in PRESETS[name].blocks() if block not in wanted]
    for name, config in PRESETS.items():
        if config.blocks() == wanted:
            return name
    raise ValueError(f"no feature preset puts {', '.join(names)} side by side in this order")


def recipes_of_row(spec: dict) -> List[Recipe]:
    """The recipes a results row's ``recipe`` names, as far as scoring needs them (windows, hop,
    output and features): one per member of an ensemble, else the recipe alone."""
    specs = list(spec["members"].values()) if "ensemble" in spec else [spec]
    return [Recipe(window_frames=s["window_frames"], hop_frames=s["hop_frames"], masked=s["masked"],
                   features=s.get("features", "edge")) for s in specs]


def ensemble_weights(name: str) -> Optional[Tuple[float, ...]]:
    """The weights of ensemble ``name``'s members (:data:`ENSEMBLE_WEIGHTS`), None for the plain mean."""
    return ENSEMBLE_WEIGHTS.get(name)


def ensemble_spec(name: str, recipes: Sequence[Recipe]) -> Dict[str, object]:
    """What a results row and a model file record about an ensemble: members, features, weights."""
    members = ENSEMBLES[name]
    spec: Dict[str, object] = {"ensemble": list(members), "features": ensemble_features(recipes),
                               "members": {m: r.to_dict() for m, r in zip(members, recipes)}}
    weights = ensemble_weights(name)
    if weights is not None:
        spec["weights"] = list(weights)
    return spec


def ensemble_model(models: Sequence[object], recipes: Sequence[Recipe],
                   weights: Optional[Sequence[float]] = None):
    """The members' logits averaged (``weights``: a weighted mean) in one model on the ensemble's
    features (:func:`ensemble_features`)."""
    from edge_ser.features import preset

    from .ensemble import average_logits, member_views

    views = member_views(preset(ensemble_features(recipes)), [preset(r.features) for r in recipes])
    return average_logits(models, views=views, weights=weights)


def _member_models(
    ensemble: str, plan: RunPlan, cache_dir: Optional[Path], models_dir: Optional[Path],
    steps: Optional[int], log, seed: Optional[int] = None,
) -> Tuple[List[object], Dict[str, Dict[str, object]]]:
    """One model per member recipe of ``ensemble`` for run ``plan.name``.

    A member model the same run of that recipe saved under ``models_dir`` is loaded (the
    recipe's own protocol run trained it on exactly these clips); otherwise it is trained
    here and saved there, so a member is trained once for all the ensembles it is part of.
    """
    import keras
    from edge_ser.features import preset

    models, info = [], {}
    for member in ENSEMBLES[ensemble]:
        saved = models_dir / seeded_label(member, seed) / f"{plan.name}.keras" if models_dir is not None else None
        if saved is not None and saved.exists():
            log(f"{ensemble}/{plan.name}: member {member} loaded from {saved}")
            models.append(keras.models.load_model(saved, compile=False))
            info[member] = {"source": str(saved), "sha256": _file_digest(saved)}
            continue
        log(f"{ensemble}/{plan.name}: member {member} trains")
        recipe = _make_recipe(member, steps, seed)
        checkpoint = checkpoint_for(saved) if saved is not None else None
        model, _, seconds = _train_run(recipe, plan, preset(recipe.features), cache_dir, log, checkpoint)
        info[member] = {"source": "trained", "train_seconds": round(seconds, 1)}
        if saved is not None:
            with atomic_path(saved) as tmp:
                model.save(tmp)
            info[member]["sha256"] = _file_digest(saved)
            checkpoint.unlink(missing_ok=True)
        models.append(model)
    return models, info


def _file_digest(path: Path) -> str:
    """The first 16 hex digits of a file's SHA-256: which member file a row scored, since a path is
    reused when a member is trained again."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def run_protocol(
    recipe_name: str, items: Sequence[Item], runs: Sequence[str], out_dir: Path, cache_dir: Optional[Path] = None,
    models_dir: Optional[Path] = None, steps: Optional[int] = None, log=print, seed: Optional[int] = None,
) -> List[Path]:
    """Train and score each run not yet done (a results file per run: an interrupted protocol resumes).

    ``recipe_name`` is a recipe (:data:`RECIPES`) or an ensemble of them (:data:`ENSEMBLES`):
    then each member's model of the run is loaded from ``models_dir`` or trained, and their
    average is scored, with each member's own float scores beside it. ``seed`` trains with
    that seed instead of the recipe's own and files the results under :func:`seeded_label`.
    """
    from edge_ser.features import preset

    from .evaluate import int8_model
    from .quantize import TFLiteRunner
    from .train import keras_predictor

    members = ENSEMBLES.get(recipe_name, ())
    corpora = recipe_corpora(recipe_name)
    recipes = {name: _make_recipe(name, steps, seed) for name in (members or (recipe_name,))}
    label = seeded_label(recipe_name, seed)
    recipe = next(iter(recipes.values()))  # windows, hop, seed and output kind: the members agree on them
    shared = ("window_frames", "hop_frames", "masked", "seed")
    if any(getattr(r, k) != getattr(recipe, k) for r in recipes.values() for k in shared):
        raise ValueError(f"ensemble {recipe_name!r}: members differ in one of {shared}")
    features = ensemble_features(list(recipes.values()))
    recipe = replace(recipe, features=features)  # what the scored model hears: both views for mixed members
    config = preset(features)
    written = []
    for name in runs:
        target = out_dir / label / f"{name}.json"
        if target.exists():
            log(f"{label}/{name}: done already ({target})")
            continue
        plan = plan_run(name, items, corpora)
        log(f"{label}/{name}: train {len(plan.train)} clips ({len({i.speaker for i in plan.train})} speakers), "
            f"calibration {len(plan.calibration)}, test {len(plan.test)}")
        t0 = time.time()
        row: Dict[str, object] = {"run": name, "recipe_name": label}
        if seed is not None:
            row["seed_of"] = recipe_name
        scorer = Scorer(plan, recipe, config, cache_dir)
        kept: Dict[str, Dict[str, ScoredSet]] = {}  # window outputs per scored model, beside the results
        checkpoint = None  # a single recipe's training state, kept until this run's results exist
        if members:
            models, info = _member_models(recipe_name, plan, cache_dir, models_dir, steps, log, seed)
            for member, model in zip(members, models):
                own = member_scorer(plan, recipe, recipes[member], cache_dir)
                info[member]["float"] = own.evaluate(keras_predictor(model), recipe.masked, calibrate=False,
                                                     keep=kept.setdefault(member_key(member), {}))
            member_recipes = [recipes[m] for m in members]
            model = ensemble_model(models, member_recipes, ensemble_weights(recipe_name))
            # the int8 graph is calibrated on clean training windows, as a single recipe's is
            train = load_clipset(plan.train, config, 0, cache_dir)
            row.update(recipe=ensemble_spec(recipe_name, member_recipes), members=info)
        else:
            checkpoint = checkpoint_for(models_dir / label / f"{name}.keras") if models_dir is not None else None
            teacher, taught_by = _teacher_model(recipe, plan, cache_dir, models_dir, steps, log, seed)
            model, train, seconds = _train_run(recipe, plan, config, cache_dir, log, checkpoint, teacher)
            row.update(recipe=recipe.to_dict(), train_seconds=round(seconds, 1))
            if taught_by:
                row["teacher"] = {"ensemble": recipe.teacher, "members": taught_by}
            if models_dir is not None:
                (models_dir / label).mkdir(parents=True, exist_ok=True)
                model.save(models_dir / label / f"{name}.keras")
        row.update(corpora=list(corpora), train_clips=len(plan.train),
                   train_speakers=len({i.speaker for i in plan.train}),
                   test_speakers=sorted({i.speaker for i in plan.test}))
        # the raw model output (logits for a masked recipe): scoring applies the softmax itself
        raw_predict = keras_predictor(model, logits=False)
        row["float"] = scorer.evaluate(raw_predict, recipe.masked, calibrate=False, keep=kept.setdefault("float", {}))
        if name == "dev" and recipe.masked:
            # the dev speakers are held out from the dev model: the temperature fitted on them is
            # what the final model uses until cv/loco runs (with their own held-out speakers) exist
            outputs = window_outputs(raw_predict, scorer.features(plan.test), recipe)
            row["dev_temperature"] = fit_temperature(outputs, plan.test, logits=True)
        if name != "dev":
            tfl = int8_model(model, ClipSet(train.items, [f[:1] for f in train.feats]), recipe)
            if models_dir is not None:
                write_bytes_atomically(models_dir / label / f"{name}.tflite", tfl)
            row["int8"] = scorer.evaluate(TFLiteRunner(tfl).predict, recipe.masked, keep=kept.setdefault("int8", {}))
            row["int8_bytes"] = len(tfl)
        row["seconds"] = round(time.time() - t0, 1)
        _write_row(target, row, kept)
        if checkpoint is not None:
            checkpoint.unlink(missing_ok=True)
        written.append(target)
        log(f"{label}/{name}: {summary_line(row)} [{row['seconds']:.0f}s] -> {target}")
    return written


def score_model_file(
    model_path: Path, run: str, label: str, items: Sequence[Item], out_dir: Path, corpora: Sequence[str],
    cache_dir: Optional[Path] = None, note: str = "", conditions: Sequence[str] = (),
    spec: Optional[dict] = None,
) -> Path:
    """Score an existing model file on a run's test clips (baseline rows: fold models, the shipped model).

    ``conditions``: also score the test clips under these listening conditions
    (:data:`converter.conditions.CONDITIONS`), in the row's ``conditions``, and the run's
    unseen-language clips (dev and ``unseen`` runs) in its ``unseen_arousal_conditions``.

    An int8 ``.tflite`` file with edge-ser metadata is scored as the device runs it: on the
    features, windows and output (probabilities or logits) its metadata names, so an ensemble on
    log-mel and PCEN is scored on both. A bare file (the first recipe's fold models have no
    metadata) hears ``edge`` log-mel in the default windows and outputs probabilities, unless
    ``spec`` (the ``recipe`` of the protocol row that made it: a fold model the protocol kept)
    says otherwise. A float ``.keras`` model (the protocol keeps members and development
    models so) carries no recipe: ``spec`` is required, and its scores go under ``float``.
    """
    from edge_ser.features import preset

    predict, recipe, logits, kind = _scoring_model(Path(model_path), spec)
    plan = plan_run(run, items, corpora)
    scorer = Scorer(plan, recipe, preset(recipe.features), cache_dir)
    kept: Dict[str, Dict[str, ScoredSet]] = {kind: {}}
    row = {"run": run, "recipe_name": label, "note": note, "corpora": list(corpora),
           "test_speakers": sorted({i.speaker for i in plan.test}),
           kind: scorer.evaluate(predict, logits, calibrate=False, keep=kept[kind])}
    if conditions:
        for key, scores in (("conditions", scorer.conditions(predict, logits, conditions)),
                            ("unseen_arousal_conditions", scorer.unseen_arousal_conditions(predict, logits,
                                                                                           conditions))):
            if scores:
                row[kind][key] = scores
    target = out_dir / label / f"{run}.json"
    _write_row(target, row, kept)
    return target


def _scoring_model(path: Path, spec: Optional[dict]
                   ) -> Tuple[Callable[[np.ndarray], np.ndarray], Recipe, bool, str]:
    """What :func:`score_model_file` runs: ``(predict, recipe it hears, outputs logits, "int8" or "float")``.

    Any file that is not a model it can score is a :class:`~edge_ser.errors.ModelError` naming it.
    """
    from edge_ser.errors import ModelError
    from edge_ser.features import preset_name
    from edge_ser.metadata import ModelMetadata
    from edge_ser.tflite_file import METADATA_NAME, read_metadata

    source = str(path)
    if path.suffix == ".keras":
        if spec is None:
            raise ModelError(f"{source}: a Keras model carries no recipe; name the row that made it "
                             "(--recipe-from)")
        import keras

        from .train import keras_predictor

        try:
            model = keras.models.load_model(path, compile=False)
        except Exception as exc:  # keras raises several types for a damaged or foreign file
            raise ModelError(f"{source}: not a Keras model ({type(exc).__name__})") from None
        recipe = _heard_by(recipes_of_row(spec))
        return keras_predictor(model, logits=False), recipe, recipe.masked, "float"
    from .quantize import TFLiteRunner

    tflite_bytes = path.read_bytes()
    entries = read_metadata(tflite_bytes, source)  # a file that is no TFLite model is refused here, in one line
    meta = ModelMetadata.from_entries(entries, source) if METADATA_NAME in entries else None
    if meta is None and spec is not None:
        recipe = _heard_by(recipes_of_row(spec))
        logits = recipe.masked
    elif meta is None:
        recipe, logits = Recipe(), False
    else:
        features = preset_name(meta.feature_config)
        if features is None:
            raise ModelError(f"{source}: its features ({meta.feature_config.hash()}) are no named preset, "
                             "which protocol scoring needs")
        recipe = Recipe(window_frames=meta.window_frames, hop_frames=meta.hop_frames, features=features)
        logits = meta.output == "logits"
    return TFLiteRunner(tflite_bytes).predict, recipe, logits, "int8"


def _heard_by(members: Sequence[Recipe]) -> Recipe:
    """What a model made by a row of ``members`` hears (windows, hop, output): the recipe itself, or
    for an ensemble its members' shared windows on the features of all their views
    (:func:`ensemble_features`), as a float ensemble saved whole or its int8 graph does."""
    return replace(members[0], features=ensemble_features(members))


def pair_run(
    sources: Sequence[Tuple[str, Optional[str]]], run: str, label: str, items: Sequence[Item], out_dir: Path,
    corpora: Sequence[str] = LOCO_CORPORA, weights: Optional[Sequence[float]] = None, note: str = "",
) -> Path:
    """Score an ensemble from members' window outputs that earlier runs stored: no model file needed.

    ``sources``: one ``(results label, member)`` per member, read from run ``run`` of that label in
    ``out_dir``: the named member's outputs inside an ensemble's row, or, with ``member`` None, a
    single recipe's float outputs. Their logits are averaged window by window (``weights``: a
    weighted mean), as the ensemble's graph averages them (:func:`converter.run_outputs.combine`),
    and scored like any float row, which names its sources and their files' digests. Why: two
    ensembles scored on the same stored member differ only by the member that differs, not by
    training that member again (which moved fold 1 by 4.3 points).
    """
    plan = plan_run(run, items, corpora)
    stored, origins = [], []
    for source, member in sources:
        results_file = out_dir / source / f"{run}.json"
        path = outputs_path(results_file)
        if not path.exists():
            raise ValueError(f"{path}: no stored outputs (run {run} of {source} not done, or done before runs "
                             "kept their outputs)")
        spec = json.loads(results_file.read_text()).get("recipe") or {}
        recipe_of = (spec.get("members") or {}).get(member) if member else spec
        if not recipe_of or not recipe_of.get("masked"):
            raise ValueError(f"{results_file}: {member or 'its model'} is no masked recipe's, so its outputs are "
                             "not logits to average")
        key = member_key(member) if member else "float"
        sets = load_outputs(path)
        if key not in sets:
            raise ValueError(f"{path}: holds no {key!r} outputs (it has {', '.join(sorted(sets))})")
        stored.append(sets[key])
        origins.append({"label": source, "member": member, "outputs": path.name, "sha256": _file_digest(path)})
    scored = {"clean": (list(plan.test), plan.classes),
              "farfield": (plan.farfield_test, plan.farfield_classes),
              "farfield_all": (list(plan.test) * DEV_FARFIELD_DRAWS, plan.classes),
              "unseen_arousal": (plan.unseen_arousal, None)}
    result: Dict[str, object] = {}
    kept: Dict[str, ScoredSet] = {}
    for name in OUTPUT_SETS:
        if not all(name in s for s in stored):
            continue
        mixed = combine([s[name] for s in stored], weights)
        set_items, classes = scored[name]
        mixed.check(set_items, f"{label}/{run} {name}")
        if name == "unseen_arousal":
            result[name] = score_arousal(clip_probabilities(mixed.outputs, logits=True), set_items)
        else:
            result[name] = score(mixed.outputs, set_items, classes, logits=True)
        if name == "farfield_all":
            result[name] = {"draws": DEV_FARFIELD_DRAWS, **result[name]}
        kept[name] = mixed
    if "clean" not in result:
        raise ValueError(f"{label}/{run}: the sources share no scored set")
    row: Dict[str, object] = {"run": run, "recipe_name": label, "paired_from": origins, "corpora": list(corpora),
                              "test_speakers": sorted({i.speaker for i in plan.test}), "float": result}
    if weights is not None:
        row["weights"] = list(weights)
    if note:
        row["note"] = note
    target = out_dir / label / f"{run}.json"
    _write_row(target, row, {"float": kept})
    return target


def _write_row(target: Path, row: Dict[str, object], kept: Dict[str, Dict[str, ScoredSet]]) -> None:
    """Write a run's results file and, first, its window outputs beside it: a results file that
    exists (what marks a run done) always has its outputs."""
    outputs = outputs_path(target)
    save_outputs(outputs, kept)
    row["outputs"] = outputs.name
    write_bytes_atomically(target, json.dumps(row, indent=1) + "\n")


def add_dev_scores(row_path: Path, model_paths: Sequence[Path], items: Sequence[Item],
                   cache_dir: Optional[Path] = None) -> Dict[str, object]:
    """Add the development scores a ``dev`` row was written without: the far-field score over every
    corpus and the unseen language's arousal (:mod:`converter.unseen_arousal`).

    The run's saved float model scores them (several models: an ensemble's members, their logits
    averaged as the ensemble does; a member's own score is its own recipe's row to gain), so rows
    of older runs become comparable without training again. The row's other scores are
    left as they are; the row records which files scored what it gained, and its stored window
    outputs gain the new sets.
    """
    import keras
    from edge_ser.features import preset

    from .train import keras_predictor

    row_path = Path(row_path)
    row = json.loads(row_path.read_text())
    if row.get("run") != "dev" or "float" not in row:
        raise ValueError(f"{row_path}: not a dev row with float scores")
    spec = row["recipe"]
    recipes = recipes_of_row(spec)
    if len(model_paths) != len(recipes):
        raise ValueError(f"{row_path}: its recipe has {len(recipes)} model(s), {len(model_paths)} given")
    models = [keras.models.load_model(p, compile=False) for p in model_paths]
    model = models[0] if len(models) == 1 else ensemble_model(models, recipes, spec.get("weights"))
    recipe = replace(recipes[0], features=ensemble_features(recipes))
    plan = plan_run("dev", items, row["corpora"])
    if sorted({i.speaker for i in plan.test}) != row["test_speakers"]:
        raise ValueError(f"{row_path}: the dev speakers differ from the row's")
    scorer = Scorer(plan, recipe, preset(recipe.features), cache_dir)
    predict = keras_predictor(model, logits=False)
    kept: Dict[str, Dict[str, ScoredSet]] = {}
    if "farfield_all" not in row["float"]:
        row["float"]["farfield_all"] = scorer.farfield_every_corpus(predict, recipe.masked,
                                                                    keep=kept.setdefault("float", {}))
        row["farfield_all_from"] = [str(p) for p in model_paths]
    if plan.unseen_arousal and "unseen_arousal" not in row["float"]:
        row["float"]["unseen_arousal"] = scorer.unseen_arousal(predict, recipe.masked,
                                                               keep=kept.setdefault("float", {}))
        row["unseen_arousal_from"] = [str(p) for p in model_paths]
    stored = outputs_path(row_path)
    if kept and stored.exists():  # rows from before runs kept outputs get none: they hold no clean set
        merged = load_outputs(stored)
        for key, sets in kept.items():
            merged.setdefault(key, {}).update(sets)
        save_outputs(stored, merged)
    write_bytes_atomically(row_path, json.dumps(row, indent=1) + "\n")
    return row


def summary_line(row: Dict[str, object]) -> str:
    kind = "int8" if "int8" in row else "float"
    res = row[kind]
    parts = [f"{kind} clean UA {100 * res['clean']['ua']:.1f} %"] if "clean" in res else [kind]
    if "unseen_arousal" in res:
        parts.append(f"unseen-language arousal UA {100 * res['unseen_arousal']['ua']:.1f} %")
    text = ", ".join(parts)
    if "farfield" in res:
        text += f", far-field UA {100 * res['farfield']['ua']:.1f} %"
    if "farfield_all" in res:
        text += f", far-field UA every corpus {100 * res['farfield_all']['ua']:.1f} %"
    if "calibration" in res:
        cal = res["calibration"]
        text += f", ECE {100 * cal['ece_before']:.1f} -> {100 * cal['ece_after']:.1f} % (T={cal['temperature']:.2f})"
    return text
