import numpy as np

from crs_ml.modeling.train import person_folds


def _data(n_persons=60, rows_each=4, seed=0):
    rng = np.random.default_rng(seed)
    persons = np.repeat([f"P{i:03d}" for i in range(n_persons)], rows_each)
    person_event = rng.random(n_persons) < 0.2
    y = np.zeros(len(persons), dtype=int)
    # only the last row of an event person is positive, as with stacked landmarks
    y[np.flatnonzero(np.repeat(person_event, rows_each))[rows_each - 1 :: rows_each]] = 1
    return persons, y, person_event


def test_every_person_in_exactly_one_fold_per_repeat():
    persons, y, _ = _data()
    folds = person_folds(persons, y, folds=5, repeats=3, seed=1)
    assert folds.shape == (3, len(persons))
    for r in range(3):
        per_person = {}
        for p, k in zip(persons, folds[r], strict=True):
            per_person.setdefault(p, set()).add(int(k))
        assert all(len(ks) == 1 for ks in per_person.values())
        assert set(np.unique(folds[r])) == set(range(5))


def test_folds_stratified_at_person_level():
    persons, y, person_event = _data(n_persons=100)
    folds = person_folds(persons, y, folds=5, repeats=1, seed=2)[0]
    first_rows = np.arange(0, len(persons), 4)
    events_per_fold = np.bincount(folds[first_rows][person_event], minlength=5)
    assert events_per_fold.max() - events_per_fold.min() <= 1


def test_repeats_differ_and_seed_reproduces():
    persons, y, _ = _data()
    a = person_folds(persons, y, 5, 2, seed=3)
    b = person_folds(persons, y, 5, 2, seed=3)
    c = person_folds(persons, y, 5, 2, seed=4)
    assert np.array_equal(a, b)
    assert not np.array_equal(a[0], a[1])
    assert not np.array_equal(a, c)
