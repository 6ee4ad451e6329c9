"""A real prompt through llama.cpp, run by the set-up script to catch a wheel built for another CPU."""

from __future__ import annotations

from joulescore.backends.llamacpp import LlamaCppBackend
from joulescore.model.generation import GenerationConfig


def main() -> None:
    backend = LlamaCppBackend("smollm2-135m", n_ctx=512)
    # Long enough that prefill takes the batched matrix kernels, not only the vector path.
    gen = backend.generate([{"role": "user", "content": "Name the planets of the solar system. " * 8}],
                           GenerationConfig(max_new_tokens=4, min_new_tokens=4))
    backend.close()
    assert gen.ok and gen.output_tokens == 4, gen
    print(f"llama.cpp ok: {gen.input_tokens} prompt tokens, {gen.output_tokens} generated")


if __name__ == "__main__":
    main()
