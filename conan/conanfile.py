"""Conan 2 recipe for tailor. Same package name, version, CMake target and options as the CMake build.

LibTorch is not on ConanCenter: the recipe expects it from the system (Debian's libtorch-dev, or a
PyTorch wheel whose cmake prefix is on CMAKE_PREFIX_PATH), as does the CMake package config.
"""
import os
import re

from conan import ConanFile
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout
from conan.tools.files import copy, load


class TailorConan(ConanFile):
    name = "tailor"
    license = "Apache-2.0"
    description = "Compress LibTorch models (pruning, quantization, distillation, NAS) and profile them per backend"
    topics = ("libtorch", "pruning", "quantization", "edge", "onednn")
    settings = "os", "arch", "compiler", "build_type"
    options = {
        "shared": [True, False],
        "fPIC": [True, False],
        "with_onednn": [True, False],
        "with_cuda": [True, False],
    }
    default_options = {"shared": False, "fPIC": True, "with_onednn": True, "with_cuda": False}
    exports_sources = "../CMakeLists.txt", "../cmake/*", "../include/*", "../src/*"

    def set_version(self):
        header = load(self, os.path.join(self.recipe_folder, "..", "include", "tailor", "version.hpp"))
        self.version = re.search(r'#define TAILOR_VERSION_STRING "([^"]+)"', header).group(1)

    def requirements(self):
        self.requires("fmt/9.1.0")
        self.requires("nlohmann_json/3.11.2")
        self.requires("eigen/3.4.0")
        self.requires("cli11/2.1.2")
        self.requires("zlib/1.2.13")
        if self.options.with_onednn:
            self.requires("onednn/2.6.3")  # Debian's version; CMake finds it as DNNL::dnnl

    def layout(self):
        cmake_layout(self)

    def generate(self):
        tc = CMakeToolchain(self)
        tc.variables["TAILOR_WITH_ONEDNN"] = bool(self.options.with_onednn)
        tc.variables["TAILOR_WITH_CUDA"] = bool(self.options.with_cuda)
        tc.variables["TAILOR_BUILD_TESTS"] = False
        tc.variables["TAILOR_BUILD_EXAMPLES"] = False
        tc.variables["TAILOR_BUILD_BENCHMARKS"] = False
        tc.generate()
        CMakeDeps(self).generate()

    def build(self):
        cmake = CMake(self)
        cmake.configure()
        cmake.build()

    def package(self):
        copy(self, "LICENSE*", src=self.source_folder, dst=os.path.join(self.package_folder, "licenses"))
        CMake(self).install()

    def package_info(self):
        # Consumers use the package's own config (find_package(tailor CONFIG), target tailor::tailor).
        self.cpp_info.set_property("cmake_file_name", "tailor")
        self.cpp_info.set_property("cmake_target_name", "tailor::tailor")
        self.cpp_info.set_property("cmake_find_mode", "none")
        self.cpp_info.builddirs = [os.path.join("lib", "cmake", "tailor")]
