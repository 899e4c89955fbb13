"""GGUF for llama.cpp, Ollama and LM Studio, written by llama.cpp's own converter (``convert_hf_to_gguf.py``).

f16 and q8_0 come straight from the converter; q4_k_m is llama.cpp's quantizer (through llama-cpp-python) applied
to the f16 file. The chat template travels in the GGUF metadata (the converter copies the tokenizer's), and an
Ollama ``Modelfile`` is written beside it. ``python -m engine.ship.gguf MODEL_DIR OUT.gguf OUTTYPE`` is the
converter run with one addition: a byte-level BPE tokenizer whose pre-tokenizer llama.cpp's list does not know (a
tokenizer trained for the model) is written as GPT-2's, which is what its ``tokenizer.json`` says it is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.ship import tools

QUANTS = ("f16", "q8_0", "q4_k_m")
OLLAMA_MARK = "\x01"  # a message's content while the chat template's pieces are measured


def convert(model_dir: Path, out_file: Path, quant: str, log: Any = None) -> Path:
    """Write ``out_file`` (GGUF at ``quant``) from a transformers model folder; UserError in plain words."""
    if quant not in QUANTS:
        raise UserError(f"quant must be one of {', '.join(QUANTS)}; got `{quant}`.")
    if why := tools.missing("gguf"):
        raise UserError(why)
    outtype = "f16" if quant == "q4_k_m" else quant
    first = out_file.with_suffix(".f16.tmp.gguf") if quant == "q4_k_m" else out_file
    command = [sys.executable, "-m", "engine.ship.gguf", str(model_dir), str(first), outtype]
    proc = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT if log else subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise UserError(_converter_error(first.with_suffix(".error.json"), proc))
    if quant == "q4_k_m":
        quantize(first, out_file, "q4_k_m")
        first.unlink()
    return out_file


def _converter_error(path: Path, proc: subprocess.CompletedProcess) -> str:
    if path.exists():
        message = json.loads(path.read_text())["message"]
        path.unlink()
        return message
    return f"llama.cpp's converter failed (exit code {proc.returncode}); see the job's log."


def quantize(src: Path, dest: Path, quant: str) -> Path:
    """llama.cpp's quantizer (``llama_model_quantize``) from an f16 GGUF."""
    import llama_cpp

    ftype = {"q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M, "q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0}[quant]
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    code = llama_cpp.llama_model_quantize(str(src).encode(), str(dest).encode(), params)
    if code != 0:
        raise UserError(f"llama.cpp's quantizer could not write {quant} (code {code}); the f16 file converts fine.")
    return dest


# --- the Ollama Modelfile ------------------------------------------------------------------


def modelfile(gguf_name: str, model_dir: Path, num_ctx: int | None = None) -> str:
    """An Ollama Modelfile: FROM the GGUF, TEMPLATE from the tokenizer's chat template (when it converts to
    Ollama's Go template exactly), its stop tokens, greedy defaults like the Playground's."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    lines = [f"FROM ./{gguf_name}"]
    template = ollama_template(tok) if tok.chat_template else None
    if template:
        lines.append(f'TEMPLATE """{template}"""')
    else:
        lines.append("# no TEMPLATE: the chat template has no exact Go equivalent; Ollama reads the GGUF's")
    for stop in stop_tokens(tok):
        lines.append(f"PARAMETER stop {json.dumps(stop)}")
    lines.append("PARAMETER temperature 0")
    if num_ctx:
        lines.append(f"PARAMETER num_ctx {int(num_ctx)}")
    return "\n".join(lines) + "\n"


def stop_tokens(tok: Any) -> list[str]:
    from engine.llm.model import end_of_turn_ids

    return [tok.convert_ids_to_tokens(i) for i in end_of_turn_ids(tok)]


def ollama_template(tok: Any) -> str | None:
    """The chat template as Ollama's Go template: each role's text before and after its content, measured by
    rendering the tokenizer's template; None when the pieces do not rebuild the template's own chats."""
    try:
        pieces = template_pieces(tok)
    except Exception:  # noqa: BLE001 - a template that refuses the probe chats has no simple Go form
        return None
    template = go_template(pieces)
    for chat in CHECK_CHATS:
        try:
            want = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        except Exception:  # noqa: BLE001 - e.g. a template without a system role
            continue
        if render_go_template(template, chat) != want:
            return None
    return template


CHECK_CHATS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
    [
        {"role": "user", "content": "what is 2 plus 3?"},
        {"role": "assistant", "content": "2 plus 3 is 5."},
        {"role": "user", "content": "and 4 plus 4?"},
    ],
]


def template_pieces(tok: Any) -> dict[str, tuple[str, str]]:
    """{role: (before, after)} for system, user and assistant, and {"generation": (prompt, "")}."""
    render = lambda chat, gen=False: tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=gen)  # noqa: E731
    user = [{"role": "user", "content": OLLAMA_MARK}]
    pieces = {"user": _split(render(user))}
    with_answer = render([*user, {"role": "assistant", "content": OLLAMA_MARK}])
    pieces["assistant"] = _split(with_answer[len(render(user)) :])
    pieces["generation"] = (render(user, True)[len(render(user)) :], "")
    try:
        with_system = render([{"role": "system", "content": OLLAMA_MARK}, *user])
        pieces["system"] = _split(with_system[: len(with_system) - len(render(user))])
    except Exception:  # noqa: BLE001 - templates without a system role
        pass
    return pieces


def _split(text: str) -> tuple[str, str]:
    if text.count(OLLAMA_MARK) != 1:
        raise ValueError("the message content is not placed once")
    before, after = text.split(OLLAMA_MARK)
    return before, after


def go_template(pieces: dict[str, tuple[str, str]]) -> str:
    """Ollama's template: each message with its role's pieces, then the generation prompt (no whitespace trims:
    the pieces are literal text)."""
    branches = []
    for role in ("system", "user", "assistant"):
        if role in pieces:
            before, after = pieces[role]
            keyword = "if" if not branches else "else if"
            branches.append(f'{{{{ {keyword} eq .Role "{role}" }}}}{before}{{{{ .Content }}}}{after}')
    return f"{{{{ range .Messages }}}}{''.join(branches)}{{{{ end }}}}{{{{ end }}}}{pieces['generation'][0]}"


def render_go_template(template: str, messages: list[dict[str, str]]) -> str:
    """Render a template that :func:`go_template` wrote, as Ollama's Go template engine does (that subset only)."""
    import re

    head, _, tail = template.partition("{{ range .Messages }}")
    body, _, after = tail.rpartition("{{ end }}")
    branches = dict(
        re.findall(r'\{\{ (?:else )?if eq \.Role "(\w+)" \}\}(.*?)(?=\{\{ else if|\{\{ end \}\}$)', body, re.S)
    )
    out = head
    for m in messages:
        if m["role"] in branches:
            out += branches[m["role"]].replace("{{ .Content }}", m["content"])
    return out + after


def main(argv: list[str] | None = None) -> int:
    """``python -m engine.ship.gguf MODEL_DIR OUT OUTTYPE``: llama.cpp's converter, in this process."""
    model_dir, out, outtype = (argv or sys.argv[1:])[:3]
    error_file = Path(out).with_suffix(".error.json")
    try:
        run_converter(Path(model_dir), Path(out), outtype)
        return 0
    except UserError as e:
        error_file.write_text(json.dumps({"message": str(e)}))
        return 1


def run_converter(model_dir: Path, out: Path, outtype: str) -> None:
    folder = tools.converter_dir()
    if folder is None:
        raise UserError(tools.missing("gguf"))
    sys.path[:0] = [str(folder), str(folder / "gguf-py")]
    import conversion  # llama.cpp's converter package (engine.ship.tools unpacks it)

    arch = _architecture(model_dir)
    if arch not in conversion.TEXT_MODEL_MAP:
        raise UserError(
            f"llama.cpp cannot convert this model: its architecture `{arch}` is not one llama.cpp supports "
            f"(it converts {len(conversion.TEXT_MODEL_MAP)} architectures, e.g. Llama, Qwen2, Mistral, Gemma, Phi). "
            "Export it as a model folder (Download) or to ONNX instead."
        )
    _know_plain_byte_level_tokenizers(conversion, model_dir)
    sys.argv = ["convert_hf_to_gguf.py", str(model_dir), "--outfile", str(out), "--outtype", outtype]
    import runpy

    runpy.run_path(str(folder / "convert_hf_to_gguf.py"), run_name="__main__")


def _architecture(model_dir: Path) -> str:
    config = json.loads((model_dir / "config.json").read_text())
    return (config.get("architectures") or [config.get("model_type", "?")])[0]


def _know_plain_byte_level_tokenizers(conversion: Any, model_dir: Path) -> None:
    """A pre-tokenizer llama.cpp does not know by its hash but whose ``tokenizer.json`` is GPT-2's byte-level
    split (a tokenizer trained for this model) is written as ``gpt-2``; any other unknown one stays an error."""
    base = conversion.base.TextModel
    original = base.get_vocab_base_pre

    def get_vocab_base_pre(self: Any, tokenizer: Any) -> str:
        try:
            return original(self, tokenizer)
        except NotImplementedError:
            if _is_gpt2_byte_level(model_dir):
                print("[trainpad] pre-tokenizer: GPT-2 byte-level (read from tokenizer.json)", flush=True)
                return "gpt-2"
            raise UserError(
                "llama.cpp does not know this tokenizer's pre-tokenizer (its hash is not in the converter's list), "
                "so it cannot be written to GGUF. Fine-tune a base model llama.cpp supports (Llama 3, Qwen2.5, "
                "SmolLM, Mistral, Gemma...)."
            ) from None

    base.get_vocab_base_pre = get_vocab_base_pre


def _is_gpt2_byte_level(model_dir: Path) -> bool:
    path = model_dir / "tokenizer.json"
    if not path.exists():
        return False
    pre = json.loads(path.read_text()).get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    return len(steps) == 1 and steps[0].get("type") == "ByteLevel" and steps[0].get("use_regex", True)


if __name__ == "__main__":
    sys.exit(main())
