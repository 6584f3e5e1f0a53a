'use strict';

// A local Serverless plugin: builds the wandb_nexus layer from the current sources before
// packaging (so `sls deploy` ships what is in src/ and python/), and puts the built layer on
// PYTHONPATH for `sls invoke local`, as Lambda puts /opt/python on sys.path. When the W&B API
// key is kept in AWS (WANDB_API_KEY_SECRET_ARN or WANDB_API_KEY_SSM_NAME, from .env or the
// environment), the functions get its name instead of the key, and their role may read that
// one secret or parameter.
const { execFileSync } = require('child_process');
const path = require('path');

const HOST_ARCHITECTURE = { x64: 'x86_64', arm64: 'arm64' };

class BuildLayer {
  constructor(serverless) {
    this.serverless = serverless;
    this.hooks = {
      'before:package:initialize': () => {
        this.keyFromAws();
        this.build(this.architecture());
      },
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

  keyFromAws() {
    const secret = process.env.WANDB_API_KEY_SECRET_ARN;
    const parameter = process.env.WANDB_API_KEY_SSM_NAME;
    if (!secret && !parameter) return;
    const provider = this.serverless.service.provider;
    provider.environment = provider.environment || {};
    // The key itself must not be in the function's configuration.
    delete provider.environment.WANDB_API_KEY;
    provider.iam = provider.iam || {};
    provider.iam.role = provider.iam.role || {};
    provider.iam.role.statements = provider.iam.role.statements || [];
    if (secret) {
      provider.environment.WANDB_API_KEY_SECRET_ARN = secret;
      provider.iam.role.statements.push({
        Effect: 'Allow',
        Action: ['secretsmanager:GetSecretValue'],
        Resource: secretArn(secret),
      });
      return;
    }
    provider.environment.WANDB_API_KEY_SSM_NAME = parameter;
    provider.iam.role.statements.push(
      { Effect: 'Allow', Action: ['ssm:GetParameter'], Resource: parameterArn(parameter) },
      // A SecureString is decrypted by KMS on SSM's behalf, and for no other caller.
      {
        Effect: 'Allow',
        Action: ['kms:Decrypt'],
        Resource: '*',
        Condition: { StringEquals: { 'kms:ViaService': { 'Fn::Sub': 'ssm.${AWS::Region}.amazonaws.com' } } },
      },
    );
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

// A secret given by ARN is that secret; by name, the secret of that name in the stack's region
// and account (Secrets Manager ends its ARNs with six random characters).
function secretArn(secret) {
  if (secret.startsWith('arn:')) return secret;
  return { 'Fn::Sub': `arn:\${AWS::Partition}:secretsmanager:\${AWS::Region}:\${AWS::AccountId}:secret:${secret}-??????` };
}

function parameterArn(parameter) {
  if (parameter.startsWith('arn:')) return parameter;
  const name = parameter.startsWith('/') ? parameter : `/${parameter}`;
  return { 'Fn::Sub': `arn:\${AWS::Partition}:ssm:\${AWS::Region}:\${AWS::AccountId}:parameter${name}` };
}

module.exports = BuildLayer;
