"""Side analyses: why a transfer happens (../PAPER.md's length, class, ablation, similarity,
dependency and asymmetry analyses).

Each side analysis is one module here and one member of the `analysis` config group
(conf/analysis/<name>.yaml, first line `# @package analysis.<name>`), selected with e.g.
`python analyze.py 'analysis=[pca,lengths,classes]'`. A module exposes

    NAME: str                 # the config key, e.g. "lengths"
    TITLE: str                # the report section's heading
    def run(ctx: SideContext, options: Mapping[str, Any]) -> SideResult

`run` reads what it needs from the context (context.py: the matrix, the cell records, their
predictions files, the source training data) and returns report blocks, figures and tables; it writes
nothing itself. An analysis that cannot run on the records at hand (e.g. no generative target)
returns a SideResult whose `skipped` says why, and the report shows that sentence.
"""
