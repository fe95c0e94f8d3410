#!/usr/bin/env python3
"""Expected IFEval verdicts from the reference implementation, for tests/ifeval_reference.rs.

Runs lm-evaluation-harness 0.4.13's vendored copy of google-research `instruction_following_eval`
(lm_eval/tasks/ifeval/{instructions,instructions_registry,instructions_util,utils}.py) with the
real nltk (punkt) and langdetect packages on the cases built by `build_cases()` and writes what
they decide. Nothing here is a re-implementation: every verdict comes from the reference code.

Setup (PyPI only; the nltk data download is not reachable here, see the punkt note below):

    python3 -m venv /tmp/ifeval-venv
    /tmp/ifeval-venv/bin/pip install nltk==3.10.4 langdetect==1.0.9 absl-py immutabledict packaging
    /tmp/ifeval-venv/bin/pip download lm-eval==0.4.13 --no-deps -d /tmp/lm-eval
    (cd /tmp/lm-eval && python3 -m zipfile -e lm_eval-0.4.13-py3-none-any.whl x)
    /tmp/ifeval-venv/bin/python scripts/ifeval_reference.py --lm-eval /tmp/lm-eval/x

Punkt: nltk loads `tokenizers/punkt_tab/english/`. This script builds that directory from
src/ifeval/punkt_english/ (the English model's parameters in punkt_tab's own file format), so the
reference and hermes-eval use the same parameters and the fixtures test the algorithm.

langdetect is seeded (DetectorFactory.seed = 0) so the verdicts are reproducible; the reference
leaves it unseeded, which makes a few borderline texts flip between runs.
"""

import argparse
import json
import os
import random
import sys
import tempfile
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data", "ifeval")
IFEVAL_JSONL = os.path.join(
    ROOT, "..", "shared", "hub", "datasets", "google", "IFEval", "default", "input_data.jsonl"
)


def setup(lm_eval_dir):
    nltk_data = tempfile.mkdtemp(prefix="ifeval_nltk_")
    dst = os.path.join(nltk_data, "tokenizers", "punkt_tab", "english")
    os.makedirs(dst)
    src = os.path.join(ROOT, "src", "ifeval", "punkt_english")
    for name in os.listdir(src):
        if name.endswith((".txt", ".tab")):
            with open(os.path.join(src, name), encoding="utf-8") as f:
                body = f.read()
            with open(os.path.join(dst, name), "w", encoding="utf-8", newline="") as f:
                f.write(body)
    os.environ["NLTK_DATA"] = nltk_data
    # Import lm_eval/tasks/ifeval without running lm_eval/__init__.py (which pulls in torch etc.).
    for pkg, sub in (("lm_eval", "lm_eval"), ("lm_eval.tasks", "lm_eval/tasks")):
        mod = types.ModuleType(pkg)
        mod.__path__ = [os.path.join(lm_eval_dir, sub)]
        sys.modules[pkg] = mod
    import langdetect

    langdetect.DetectorFactory.seed = 0
    import nltk

    nltk.data.path.insert(0, nltk_data)
    from lm_eval.tasks.ifeval import instructions_util, utils

    return utils, instructions_util, nltk, langdetect


# ---------------------------------------------------------------------------------------------
# Texts: varied English (abbreviations, numbers, quotes, lists, markdown) and other languages.

TEXTS = [
    "Dr. Smith went to Washington, D.C. on Jan. 5. He met Mr. Brown at 3 p.m. and they talked.",
    "The U.S. economy grew 3.5% last year. Analysts, e.g. those at the I.M.F., expected less.",
    "Wait... what? I thought so! Really?! \"Yes,\" she said. \"It's true.\"",
    "He said (quietly.) Then he left. [See note 4.] The end.",
    "I LOVE THIS PLACE. IT'S THE BEST IN THE U.S.A. DON'T YOU AGREE? WE'LL GO AGAIN!",
    "my name is ana and i live in a small town. i like dogs, cats and birds. that is all.",
    "* First point about the project.\n* Second point, with a comma.\n* Third point\n- A dash item\n- Another dash item",
    "Here is a *highlighted section* and another *one*. Also **bold text** and ** ** empty.",
    "SECTION 1\nThe history of the city.\nSECTION 2\nThe geography of the region.\nSECTION 3\nThe people.",
    "Section 1: Intro.\nSection 2: Body.\nSection3 Conclusion",
    "First paragraph about cats.\n\nSecond paragraph about dogs.\n\nThird paragraph about birds.",
    "Para one.\n***\nPara two.\n***\nPara three.",
    "Lorem ipsum dolor sit amet.\n\nP.S. Don't forget the milk.",
    "Thanks for reading!\nP.P.S. One more thing.",
    "<<The Joy of Rust>>\nRust is a systems language. It is fast, safe and fun.",
    "\"This whole answer is quoted. It has two sentences.\"",
    "```json\n{\"name\": \"Alice\", \"age\": 30, \"skills\": [\"rust\", \"python\"]}\n```",
    "{\"a\": 1, \"b\": [1, 2, 3]}",
    "Sure! Here is the JSON:\n```JSON\n{\"ok\": true}\n```",
    "Response one: the sky is blue.\n******\nResponse two: the grass is green.",
    "Same answer.\n******\nSame answer.",
    "Write a letter to your friend about your summer. Dear John, my summer was great.",
    "The meeting is at 10 a.m. tomorrow. Please bring your I.D. card. Thank you. Is there anything else I can help with?",
    "Prices rose 2.3 percent in Q3. Sales of No. 5 perfume, however, fell. J. R. R. Tolkien wrote it.",
    "The temperature was -5.5 degrees... It felt colder. Much colder!",
    "Mt. Everest is 8,848 m tall. St. Louis is in Missouri. Prof. Lee teaches at M.I.T.",
    "Hello.World. This has no space.Another one.",
    "I wrote [name] and [address] and [date] as placeholders, plus [ ] and [x].",
    "Look at this: 1. apples 2. oranges 3. pears. Done.",
    "A sentence ending with a quote \u201clike this.\u201d Next sentence starts here. \u00abAnd a guillemet.\u00bb Done.",
    "Email me at john.doe@example.com or visit www.example.org. It's free.",
    "NASA and the FBI, the CIA and the NSA all met with IBM. The CEO said OK.",
    "Short.",
    "",
    "   \n  \n",
    "El gato est\u00e1 en la casa. Me gusta mucho comer paella con mis amigos los domingos por la tarde.",
    "Le chat est sur la table. J'aime beaucoup me promener dans le parc avec mes amis le dimanche.",
    "Die Katze schl\u00e4ft auf dem Sofa. Ich gehe am Wochenende gerne mit meinen Freunden wandern.",
    "Il gatto dorme sul divano. Mi piace molto andare al mare con la mia famiglia in estate.",
    "O gato est\u00e1 dormindo no sof\u00e1. Eu gosto muito de viajar com a minha fam\u00edlia nas f\u00e9rias.",
    "\u041a\u043e\u0448\u043a\u0430 \u0441\u043f\u0438\u0442 \u043d\u0430 \u0434\u0438\u0432\u0430\u043d\u0435. \u042f \u043b\u044e\u0431\u043b\u044e \u0433\u0443\u043b\u044f\u0442\u044c \u0432 \u043f\u0430\u0440\u043a\u0435 \u0441\u043e \u0441\u0432\u043e\u0438\u043c\u0438 \u0434\u0440\u0443\u0437\u044c\u044f\u043c\u0438 \u043f\u043e \u0432\u044b\u0445\u043e\u0434\u043d\u044b\u043c.",
    "\u092e\u0948\u0902 \u0939\u0930 \u0926\u093f\u0928 \u0938\u0941\u092c\u0939 \u092a\u093e\u0930\u094d\u0915 \u092e\u0947\u0902 \u091f\u0939\u0932\u0928\u0947 \u091c\u093e\u0924\u093e \u0939\u0942\u0901\u0964 \u092e\u0941\u091d\u0947 \u0915\u093f\u0924\u093e\u092c\u0947\u0902 \u092a\u0922\u093c\u0928\u093e \u092c\u0939\u0941\u0924 \u092a\u0938\u0902\u0926 \u0939\u0948\u0964",
    "\u79c1\u306f\u6bce\u671d\u30b3\u30fc\u30d2\u30fc\u3092\u98f2\u307f\u307e\u3059\u3002\u65e5\u672c\u306e\u6587\u5316\u304c\u3068\u3066\u3082\u597d\u304d\u3067\u3059\u3002",
    "\uc800\ub294 \ub9e4\uc77c \uc544\uce68 \ucee4\ud53c\ub97c \ub9c8\uc2ed\ub2c8\ub2e4. \ud55c\uad6d \uc74c\uc2dd\uc744 \uc815\ub9d0 \uc88b\uc544\ud574\uc694.",
    "\u0623\u0646\u0627 \u0623\u062d\u0628 \u0627\u0644\u0642\u0631\u0627\u0621\u0629 \u0643\u062b\u064a\u0631\u0627. \u0627\u0644\u0637\u0642\u0633 \u062c\u0645\u064a\u0644 \u0627\u0644\u064a\u0648\u0645 \u0641\u064a \u0627\u0644\u0645\u062f\u064a\u0646\u0629.",
    "Kissa nukkuu sohvalla. Min\u00e4 pid\u00e4n kovasti k\u00e4velyist\u00e4 mets\u00e4ss\u00e4 yst\u00e4vieni kanssa.",
    "Paka analala kwenye kitanda. Ninapenda sana kusoma vitabu na kucheza mpira na marafiki zangu.",
    "T\u00f4i th\u00edch \u0111\u1ecdc s\u00e1ch v\u00e0o bu\u1ed5i t\u1ed1i. Th\u1eddi ti\u1ebft h\u00f4m nay r\u1ea5t \u0111\u1eb9p.",
    "Kot \u015bpi na kanapie. Bardzo lubi\u0119 spacerowa\u0107 po lesie z przyjaci\u00f3\u0142mi w weekendy.",
    "\u0e09\u0e31\u0e19\u0e0a\u0e2d\u0e1a\u0e01\u0e34\u0e19\u0e2d\u0e32\u0e2b\u0e32\u0e23\u0e44\u0e17\u0e22\u0e21\u0e32\u0e01 \u0e27\u0e31\u0e19\u0e19\u0e35\u0e49\u0e2d\u0e32\u0e01\u0e32\u0e28\u0e14\u0e35",
    "Mixed text: hello there, bonjour mes amis, hola amigos, this is mostly English though.",
    "1234 5678 !!! ???",
    "THE END. NO MORE. P.S. BYE",
    "this is all lowercase, with a comma, and it ends here. is there anything else i can help with?",
    "Line with trailing spaces.   \n\n\n\nAnother after blank lines.",
    "Title: <<>> empty and <<  >> blank but <<Real Title>> here.",
    "He can't go. She won't stay. They're LATE. I'M DONE. GONNA WIN. CANNOT STOP.",
    "Use the \u2014 em dash \u2013 and en dash. (Parentheses) {braces} <angles> and 'single quotes'.",
]


def pool_response(rng):
    """A response assembled from the texts above, sometimes with markdown around it."""
    parts = rng.sample([t for t in TEXTS if t.strip()], rng.randint(1, 3))
    sep = rng.choice(["\n\n", "\n", " ", "\n***\n", "\n******\n"])
    body = sep.join(parts)
    wrap = rng.random()
    if wrap < 0.15:
        body = "Sure, here is my answer:\n" + body
    elif wrap < 0.25:
        body = body + "\nI hope this helps!"
    elif wrap < 0.32:
        body = "**" + body + "**"
    elif wrap < 0.38:
        body = body.upper()
    elif wrap < 0.44:
        body = body.lower()
    elif wrap < 0.48:
        body = '"' + body + '"'
    return body


def tailored_response(row, rng):
    """A response that tries to follow the row's instructions (so passing verdicts are exercised)."""
    out = []
    tail = []
    for iid, kw in zip(row["instruction_id_list"], row["kwargs"]):
        if iid == "combination:repeat_prompt":
            out.insert(0, kw["prompt_to_repeat"])
        elif iid == "detectable_format:title":
            out.append("<<A Fitting Title>>")
        elif iid == "detectable_format:number_bullet_lists":
            out.extend(f"* point number {i}" for i in range(kw["num_bullets"]))
        elif iid == "detectable_format:number_highlighted_sections":
            out.extend(f"*highlight {i}*" for i in range(kw["num_highlights"]))
        elif iid == "detectable_content:number_placeholders":
            out.append(" ".join(f"[slot{i}]" for i in range(kw["num_placeholders"])))
        elif iid == "detectable_format:multiple_sections":
            for i in range(1, kw["num_sections"] + 1):
                out.append(f"{kw['section_spliter']} {i}\nContent of part {i}.")
        elif iid == "keywords:existence":
            out.append("We talk about " + " and ".join(kw["keywords"]) + ".")
        elif iid == "keywords:frequency":
            n = kw["frequency"] if kw["relation"] == "at least" else max(kw["frequency"] - 1, 0)
            out.append(" ".join([kw["keyword"]] * n))
        elif iid == "length_constraints:number_words":
            n = kw["num_words"] if kw["relation"] == "at least" else max(kw["num_words"] // 2, 1)
            out.append(" ".join(rng.choice(["alpha", "beta", "gamma", "delta"]) for _ in range(n)))
        elif iid == "length_constraints:number_sentences":
            n = kw["num_sentences"] if kw["relation"] == "at least" else max(kw["num_sentences"] - 1, 1)
            out.append(" ".join(f"This is sentence {i}." for i in range(n)))
        elif iid == "length_constraints:number_paragraphs":
            out.append("\n***\n".join(f"Paragraph {i}." for i in range(kw["num_paragraphs"])))
        elif iid == "length_constraints:nth_paragraph_first_word":
            paras = [f"Paragraph {i} text." for i in range(kw["num_paragraphs"])]
            paras[kw["nth_paragraph"] - 1] = kw["first_word"].capitalize() + " starts this one."
            out.append("\n\n".join(paras))
        elif iid == "detectable_content:postscript":
            tail.append(kw["postscript_marker"] + " a note at the end.")
        elif iid == "startend:end_checker":
            tail.append(kw["end_phrase"])
        elif iid == "detectable_format:constrained_response":
            out.append("My answer is yes.")
        elif iid == "detectable_format:json_format":
            out = ['```json\n{"answer": "yes"}\n```']
        elif iid == "combination:two_responses":
            out = [out[0] if out else "First take.", "******", "Second take."]
        elif iid == "keywords:letter_frequency":
            n = kw["let_frequency"] if kw["let_relation"] == "at least" else 0
            out.append(kw["letter"] * n)
        elif iid == "change_case:capital_word_frequency":
            n = kw["capital_frequency"] if kw["capital_relation"] == "at least" else 0
            out.append(" ".join(["WORD"] * n))
    text = "\n".join(out + tail)
    ids = row["instruction_id_list"]
    if "change_case:english_lowercase" in ids:
        text = text.lower()
    if "change_case:english_capital" in ids:
        text = text.upper()
    if "punctuation:no_comma" in ids:
        text = text.replace(",", "")
    if "startend:quotation" in ids:
        text = '"' + text + '"'
    return text


def handmade_cases():
    """Pass, fail and loose-only cases for every instruction id, with hand-picked kwargs."""
    c = []

    def add(iid, kw, responses, prompt="Write something."):
        for r in responses:
            c.append({"key": -1, "prompt": prompt, "instruction_id_list": [iid], "kwargs": [kw]}, )
            c[-1] = {"row": c[-1], "response": r}

    add("keywords:existence", {"keywords": ["alpha", "beta"]},
        ["Alpha and BETA here.", "only alpha", "alphabetagamma"])
    add("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": "at least"},
        ["cat Cat", "one cat", "concatenate cat"])
    add("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": "less than"},
        ["one cat", "cat cat", "no felines"])
    add("keywords:forbidden_words", {"forbidden_words": ["red", "blue"]},
        ["green only", "a Red car", "reddish bluer", "**red**\nfine"])
    add("keywords:letter_frequency", {"letter": "z", "let_frequency": 3, "let_relation": "at least"},
        ["zZz", "zz", "Zebra puzzle"])
    add("keywords:letter_frequency", {"letter": "e", "let_frequency": 3, "let_relation": "less than"},
        ["tree", "yes", "EEE"])
    add("language:response_language", {"language": "es"},
        [TEXTS[35], TEXTS[36], "12345", "Hola.\n" + TEXTS[35]])
    add("language:response_language", {"language": "hi"}, [TEXTS[41], TEXTS[0]])
    add("language:response_language", {"language": "ko"}, [TEXTS[43], TEXTS[42]])
    add("length_constraints:number_sentences", {"num_sentences": 3, "relation": "at least"},
        [TEXTS[0], TEXTS[2], "One. Two.", TEXTS[25], TEXTS[23]])
    add("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"},
        ["One. Two.", "One. Two. Three.", TEXTS[1], "Intro line\nOne. Two. Three."])
    add("length_constraints:number_paragraphs", {"num_paragraphs": 3},
        [TEXTS[11], "a\n***\nb", "a\n***\n\n***\nb\n***\nc", "***\na\n***\nb\n***\nc\n***",
         "Intro\n***\na\n***\nb\n***\nc"])
    add("length_constraints:number_words", {"num_words": 5, "relation": "at least"},
        ["one two three four five", "one two three four", "don't stop-me now_ok 3.5"])
    add("length_constraints:number_words", {"num_words": 5, "relation": "less than"},
        ["one two three four", "one two three four five"])
    add("length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "dogs"},
        ["Cats.\n\nDogs are great.\n\nBirds.", "Cats.\n\n\"Dogs,\" he said.\n\nBirds.",
         "Cats.\n\nCats again.\n\nBirds.", "Cats.\n\nDogs.", "Cats.\n\n\n\nDogs x.\n\nBirds."])
    add("detectable_content:number_placeholders", {"num_placeholders": 2},
        ["[a] and [b]", "[a] only", "[a][b][c]"])
    add("detectable_content:postscript", {"postscript_marker": "P.S."},
        [TEXTS[12], "no postscript", "text\np.s. lower", "text PS nope"])
    add("detectable_content:postscript", {"postscript_marker": "P.P.S"},
        [TEXTS[13], "P. P. S. spaced", "P.S. only"])
    add("detectable_format:number_bullet_lists", {"num_bullets": 5},
        [TEXTS[6], "* one\n* two", "Intro:\n" + TEXTS[6], "** bold\n* a\n* b\n* c\n* d\n* e"])
    add("detectable_format:constrained_response", {},
        ["My answer is yes.", "My answer is maybe. Because.", "Yes."])
    add("detectable_format:number_highlighted_sections", {"num_highlights": 2},
        [TEXTS[7], "*one*", "**bold** and *it*", "* *"])
    add("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 3},
        [TEXTS[8], "SECTION 1\na\nSECTION 2\nb", TEXTS[9]])
    add("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2},
        [TEXTS[9], TEXTS[8]])
    add("detectable_format:json_format", {},
        [TEXTS[16], TEXTS[17], TEXTS[18], "not json", "```\n[1, 2]\n```", "NaN", "{'a': 1}"])
    add("detectable_format:title", {}, [TEXTS[14], TEXTS[54], "<<>>", "no title", "<<multi\nline>>"])
    add("combination:two_responses", {}, [TEXTS[19], TEXTS[20], "one\n******\ntwo\n******\nthree",
                                          "******\nA\n******\nB\n******"])
    add("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem about cats."},
        ["Write a poem about cats. Cats are soft.", "  write a POEM about cats. ok",
         "Sure! Write a poem about cats.", "Sure!\nWrite a poem about cats. Meow."])
    add("startend:end_checker", {"end_phrase": "Any other questions?"},
        ["Done. Any other questions?", "Done. Any other questions?\"", "Any other questions? No.",
         "done. any other questions?  ", "Any other questions?\nThanks!"])
    add("startend:quotation", {}, [TEXTS[15], "\"unbalanced", "no quotes", "\"\"", "\"",
                                   "Here you go:\n\"quoted\""])
    add("change_case:capital_word_frequency", {"capital_frequency": 3, "capital_relation": "at least"},
        [TEXTS[31], TEXTS[55], "NO", TEXTS[4]])
    add("change_case:capital_word_frequency", {"capital_frequency": 3, "capital_relation": "less than"},
        ["OK fine", TEXTS[31], "I'M DONE"])
    add("change_case:english_capital", {}, [TEXTS[4], TEXTS[50], "Mixed Case", "\u00c9T\u00c9 EN FRANCE EST CHAUD ET BEAU",
                                            "1234", "Sure:\nALL CAPS TEXT HERE FOR YOU"])
    add("change_case:english_lowercase", {}, [TEXTS[5], TEXTS[51], "Not lower", "\u00e9t\u00e9 en france",
                                              "**all lowercase text here**", "Sure:\nall lowercase text here for you"])
    add("punctuation:no_comma", {}, ["no commas here", "one, comma", "full\uff0cwidth", "Hi,\nno commas below"])
    # Several instructions at once (prompt level differs from instruction level).
    c.append({"row": {"key": -1, "prompt": "p", "instruction_id_list": [
        "punctuation:no_comma", "detectable_format:title", "startend:end_checker"],
        "kwargs": [{}, {}, {"end_phrase": "Bye."}]}, "response": "<<T>>\nHello, world. Bye."})
    return c


def build_cases():
    rows = [json.loads(l) for l in open(IFEVAL_JSONL, encoding="utf-8")]
    cases = handmade_cases()
    rng = random.Random(14)
    for row in rows:
        cases.append({"row": row, "response": tailored_response(row, rng)})
        for _ in range(2):
            cases.append({"row": row, "response": pool_response(rng)})
    for i, c in enumerate(cases):
        c["id"] = i
    return rows, cases


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lm-eval", required=True, help="directory holding the unpacked lm_eval package")
    args = ap.parse_args()
    utils, iu, nltk, langdetect = setup(args.lm_eval)
    rows, cases = build_cases()

    with open(os.path.join(DATA, "verdicts.jsonl"), "w", encoding="utf-8") as f:
        for c in cases:
            row = c["row"]
            inp = utils.InputExample(key=row["key"], instruction_id_list=row["instruction_id_list"],
                                     prompt=row["prompt"], kwargs=row["kwargs"])
            strict = utils.test_instruction_following_strict(inp, c["response"])
            loose = utils.test_instruction_following_loose(inp, c["response"])
            out = {"id": c["id"], "row": row, "response": c["response"],
                   "strict": strict.follow_instruction_list, "loose": loose.follow_instruction_list}
            f.write(json.dumps(out, ensure_ascii=False) + "\n")

    # Text-level behaviour of the two libraries, on every text above and every IFEval prompt.
    texts = list(TEXTS) + [r["prompt"] for r in rows]
    texts += [pool_response(random.Random(1000 + i)) for i in range(200)]
    with open(os.path.join(DATA, "texts.jsonl"), "w", encoding="utf-8") as f:
        for t in texts:
            tok = iu._get_sentence_tokenizer()
            try:
                lang = langdetect.detect(t)
            except langdetect.LangDetectException:
                lang = None
            words = nltk.word_tokenize(t)
            out = {"text": t, "sentences": tok.tokenize(t), "words": iu.count_words(t),
                   "capital_words": sum(1 for w in words if w.isupper()), "tokens": words,
                   "lang": lang}
            f.write(json.dumps(out, ensure_ascii=False) + "\n")
    print(f"{len(cases)} cases, {len(texts)} texts written to {DATA}")


if __name__ == "__main__":
    main()
