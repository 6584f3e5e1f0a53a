'use strict';

// A local Serverless plugin: builds the wandb_nexus layer from the current sources before
// packaging (so `sls deploy` ships what is in src/ and python/), and puts the built layer on
// PYTHONPATH for `sls invoke local`, as Lambda puts /opt/python on sys.path.
const { execFileSync } = require('child_process');
const path = require('path');

const HOST_ARCHITECTURE = { x64: 'x86_64', arm64: 'arm64' };

class BuildLayer {
  constructor(serverless) {
    this.serverless = serverless;
    this.hooks = {
      'before:package:initialize': () => this.build(this.architecture()),
      'before:invoke:local:invoke': () => this.useLocally(),
    };
  }

  architecture() {
    return this.serverless.service.provider.architecture || 'x86_64';
  }

  serviceDir() {
    return this.serverless.serviceDir || this.serverless.config.servicePath;
  }

  build(arch) {
    // WANDB_NEXUS_BUILD_PYTHON names a Python with maturin and ziglang; inside `pipenv shell`
    // python3 is one; elsewhere go through pipenv.
    const python = process.env.WANDB_NEXUS_BUILD_PYTHON
      ? [process.env.WANDB_NEXUS_BUILD_PYTHON]
      : process.env.VIRTUAL_ENV
        ? ['python3']
        : ['python3', '-m', 'pipenv', 'run', 'python'];
    this.serverless.cli.log(`Building the wandb_nexus layer for ${arch}...`);
    execFileSync(python[0], [...python.slice(1), 'scripts/build_layer.py', '--arch', arch], {
      cwd: this.serviceDir(),
      stdio: 'inherit',
    });
  }

  useLocally() {
    const arch = HOST_ARCHITECTURE[process.arch];
    if (!arch) {
      throw new Error(`no Lambda architecture matches this machine (${process.arch})`);
    }
    this.build(arch);
    const layer = path.join(this.serviceDir(), 'build', `layer-${arch}`, 'python');
    process.env.PYTHONPATH = [layer, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter);
  }
}

module.exports = BuildLayer;
