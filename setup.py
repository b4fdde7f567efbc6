"""Packaging for emrdm: every value comes from `settings.ini`, which nbdev reads too (MANIFEST.in ships it in the sdist)."""
import re
from configparser import ConfigParser
from pathlib import Path

import setuptools

here = Path(__file__).resolve().parent
parser = ConfigParser(delimiters=["="])
if not parser.read(here / "settings.ini", encoding="utf-8"):
    raise SystemExit(f"settings.ini is missing beside {here / 'setup.py'}: it holds the package's metadata")
cfg = parser["DEFAULT"]


def reqs(key):
    "Space-separated requirement specifiers from `settings.ini` (none of them contain spaces)."
    return cfg.get(key, "").split()


def long_description():
    "README.md with relative links made absolute, so that its images and links also work on PyPI."
    raw = f"{cfg['git_url'].replace('github.com', 'raw.githubusercontent.com')}/{cfg['branch']}/"
    blob = f"{cfg['git_url']}/blob/{cfg['branch']}/"
    def absolute(m):
        bang, text, target = m.groups()
        if re.match(r"[a-z][a-z0-9+.-]*:|#|/", target): return m.group(0)
        return f"{bang}[{text}]({(raw if bang else blob) + target})"
    return re.sub(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)", absolute, (here / "README.md").read_text(encoding="utf-8"))


statuses = ["1 - Planning", "2 - Pre-Alpha", "3 - Alpha", "4 - Beta", "5 - Production/Stable", "6 - Mature", "7 - Inactive"]
py_versions = ["3.10", "3.11", "3.12", "3.13"]
min_python = cfg["min_python"]
docs = cfg["doc_host"] + cfg["doc_baseurl"]

setuptools.setup(
    name=cfg["lib_name"],
    version=cfg["version"],
    description=cfg["description"],
    long_description=long_description(),
    long_description_content_type="text/markdown",
    author=cfg["author"],
    author_email=cfg["author_email"],
    url=docs,
    project_urls={"Documentation": docs, "Source": cfg["git_url"], "Issues": cfg["git_url"] + "/issues"},
    license_expression=cfg["license_spdx"],
    license_files=["LICENSE"],
    keywords=cfg["keywords"].split(),
    classifiers=[
        f"Development Status :: {statuses[int(cfg['status']) - 1]}",
        f"Intended Audience :: {cfg['audience']}",
        f"Natural Language :: {cfg['language']}",
        *[f"Programming Language :: Python :: {v}" for v in py_versions[py_versions.index(min_python):]],
        *[f"Topic :: {t.strip()}" for t in cfg["topics"].split(";")],
    ],
    # The YAML configs live in data-only folders (emrdm/configs/...): namespace packages, so setuptools ships them
    packages=setuptools.find_namespace_packages(include=[cfg["lib_name"], cfg["lib_name"] + ".*"], exclude=["*.__pycache__"]),
    package_data={"": ["*.yaml"]},
    python_requires=f">={min_python}",
    install_requires=reqs("requirements"),
    extras_require={"dev": reqs("dev_requirements"), "tensorboard": reqs("tensorboard_requirements")},
    entry_points={
        "console_scripts": reqs("console_scripts"),
        "nbdev": [f"{cfg['lib_name']}={cfg['lib_name']}._modidx:d"],
    },
    zip_safe=False,
)
