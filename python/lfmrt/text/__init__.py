"""Text around the token stream: streaming detokenization and stop strings, the model's chat
template, and tool calls (definitions in, parsed calls out).

- :mod:`.detokenizer`: token ids to text pieces that never split a character or leak a stop string.
- :mod:`.chat_template`: the model's own Jinja chat template, rendered as transformers does.
- :mod:`.tool_calls`: tool definitions for the template, and the model's calls parsed with ``ast``.
"""
