"""Measures of poems, for any text model trained on one poem a line, beside the same measures of real poems.

    form-valid   4 or 8 clauses, all of 5 or all of 7 Chinese characters, each ended by clause punctuation
    rhyme        of the form-valid poems, those whose even clauses (2, 4, 6, 8) end in characters of one rhyme
    novelty      of the generated clauses (5- or 7-character runs between punctuation), those found nowhere
                 in the training poems
    distinct     distinct poems / poems

The rhyme rule: a character's finals (韵母) by pypinyin, with every reading it lists (heteronyms), grouped as
the 13 rhymes of 十三辙 (an/ian/uan/üan rhyme, i/ü/er/-i rhyme, eng/ing/ong/iong rhyme, ...), tones ignored.
The rhyme books Tang poets wrote to (切韵, and 平水韵's 106 rhymes after it) are finer by tone (a level-tone
rhyme never rhymes with an oblique one) and by Middle Chinese finals (东 and 冬 are two rhymes), and coarser
where Mandarin has split what was one (斜 rhymed with 家, xie and jia now): the modern rule passes some pairs
the books would not and fails some they would. So it is applied to real held-out poems too, whose share is
the ceiling a model's share is read against.
"""

import re

import numpy as np
from models.pinyin import finals_of
from models.poems import CLAUSE_PUNCTUATION, FORMS, HAN, LINE_END, sample_poems

DEFAULT_POEMS = 500
POEM_TEMPERATURE = 1.0  # generate.py's default temperature
# 十三辙: pypinyin's finals (ü written v; uei and uen as its strict finals spell them) -> rhyme group.
RHYME_GROUPS = {
    "发花": ("a", "ia", "ua"), "梭波": ("o", "e", "uo"), "乜斜": ("ie", "ve", "ê"),
    "一七": ("i", "v", "er"), "怀来": ("ai", "uai"), "灰堆": ("ei", "uei", "ui"), "姑苏": ("u",),
    "油求": ("ou", "iou", "iu"), "遥条": ("ao", "iao"), "言前": ("an", "ian", "uan", "van"),
    "人辰": ("en", "in", "uen", "un", "vn"), "江阳": ("ang", "iang", "uang"),
    "中东": ("eng", "ing", "ong", "iong", "ueng"),
}
RHYME_OF_FINAL = {final: group for group, finals in RHYME_GROUPS.items() for final in finals}
CLAUSE = re.compile(f"([{HAN}]+)[{CLAUSE_PUNCTUATION}]")
CLAUSE_RUN = re.compile(f"(?<![{HAN}])[{HAN}]+(?=[{CLAUSE_PUNCTUATION}])")
VALID_SHAPES = set(FORMS.values())


def clauses(poem):
    """The clauses of a poem whose whole text is clauses ended by clause punctuation, else None."""
    if not re.fullmatch(f"(?:[{HAN}]+[{CLAUSE_PUNCTUATION}])+", poem):
        return None
    return CLAUSE.findall(poem)


def is_form_valid(poem):
    parts = clauses(poem)
    return parts is not None and len({len(part) for part in parts}) == 1 and (len(parts[0]), len(parts)) in VALID_SHAPES


def rhymes_of(char):
    """The rhyme groups of every reading pypinyin knows for `char` (a set; empty if none): the finals --pinyin's
    model reads (models/pinyin.py), grouped."""
    return {RHYME_OF_FINAL[final] for final in finals_of(char) if final in RHYME_OF_FINAL}


def rhymes(poem):
    """True when the last characters of the even clauses of a form-valid poem share a rhyme group."""
    ends = [part[-1] for part in clauses(poem)[1::2]]
    return bool(set.intersection(*(rhymes_of(char) for char in ends)))


def measure(poems, training_text):
    """The measures of the module docstring for a list of poems (str), novelty against `training_text`."""
    valid = [poem for poem in poems if is_form_valid(poem)]
    # Every clause-shaped run of 5 or 7 characters, in any poem, valid or not.
    runs = [run for poem in poems for run in CLAUSE_RUN.findall(poem) if len(run) in (5, 7)]
    novel = [run for run in runs if run not in training_text]
    return {"poems": len(poems), "form_valid_share": len(valid) / len(poems),
            "rhyme_share_of_valid": float(np.mean([rhymes(poem) for poem in valid])) if valid else 0.0,
            "clauses": len(runs), "novel_clause_share": len(novel) / len(runs) if runs else 0.0,
            "distinct_share": len(set(poems)) / len(poems)}


def unigram_entropy_bits(ids):
    """-sum p log2 p of the characters' frequencies in `ids`: the bits per character of a model that knows
    only how often each character occurs."""
    counts = np.bincount(ids)
    probabilities = counts[counts > 0] / len(ids)
    return float(-np.sum(probabilities * np.log2(probabilities)))


def evaluate(sampler, data, count=DEFAULT_POEMS, seed=0, temperature=POEM_TEMPERATURE):
    """The model's poems (unconstrained, at `temperature`) and as many real held-out poems, measured alike:
    a dict for metrics.json, with the poems themselves under "samples"."""
    training_text = data.vocabulary.decode(data.train_ids)
    generated = sample_poems(sampler, data.vocabulary, count, temperature=temperature, seed=seed)
    real = data.documents("held_out")[:count]
    return {"poems": count, "temperature": temperature, "seed": seed,
            "rhyme_rule": "pypinyin finals of every reading, grouped as the 13 rhymes of 十三辙, tones ignored",
            "model": measure(generated, training_text), "real_held_out": measure(real, training_text),
            "unigram_entropy_bits": unigram_entropy_bits(data.train_ids), "samples": generated}


def table(verse, held_out_bits):
    """The measures as rows of text: model beside real held-out poems (what evaluate.py prints)."""
    model, real = verse["model"], verse["real_held_out"]
    rows = [("form-valid", "form_valid_share"), ("rhyme share of valid", "rhyme_share_of_valid"),
            ("novel clauses", "novel_clause_share"), ("distinct poems", "distinct_share")]
    lines = [f"  {verse['poems']} poems at temperature {verse['temperature']}:  model   real held-out"]
    lines += [f"    {label:<22}{model[key]:>8.1%}{real[key]:>12.1%}" for label, key in rows]
    lines.append(f"    {'bits/char (held-out)':<22}{held_out_bits:>8.3f}{verse['unigram_entropy_bits']:>12.3f}"
                 "  (unigram entropy)")
    return LINE_END.join(lines)
