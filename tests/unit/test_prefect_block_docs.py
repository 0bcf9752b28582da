"""What the Prefect UI shows of each block (#21 item 4): a documentation link and a code example that
loads the block and uses it with names that exist."""

from __future__ import annotations

import ast
import importlib

import pytest


@pytest.mark.parametrize(
    ("name", "page"), [("RayJob", "rayjob"), ("RayCluster", "raycluster"), ("RayService", "rayservice")]
)
def test_each_block_links_its_quick_start_and_shows_an_example_that_loads_it(name: str, page: str) -> None:
    import kuberay_provider.prefect as adapter

    block = getattr(adapter, name)
    assert str(block._documentation_url).endswith(f"/kubernetes/getting-started/{page}-quick-start.html")
    example = block.get_code_example()
    assert example is not None and f'{name}.load("BLOCK_NAME")' in example
    for node in ast.walk(ast.parse(example)):  # the example's imports name what the packages export
        if isinstance(node, ast.ImportFrom) and node.module:
            module = importlib.import_module(node.module)
            assert all(hasattr(module, alias.name) for alias in node.names), (node.module, [a.name for a in node.names])
