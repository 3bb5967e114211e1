"""The coref stage (issue 13): which object in which shared photo a dialogue's last pronoun ("that one", "저거") means.

Built so far, the data layer only: `data` (the schema, checked on load; seed 002's text format; content-disjoint
splits), `toy` (the embedded default's toy dialogues and a rule that reads the referent from the dialogue) and
`answers` (a generated answer -> a choice label, and whether it names exactly one option in its words).
"""
