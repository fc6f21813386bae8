# Dagster on ECS Fargate: the webserver (behind an HTTPS load balancer that only allowed CIDRs
# reach), the daemon and the ingestion worker (`tidelake ingest --follow`) run as services from one
# code-location image; the EcsRunLauncher starts one task per run from the "run" task definition.
# Run and event storage is RDS Postgres, whose password lives in Secrets Manager. The image carries
# deploy/dagster.yaml, which reads every value set here from the environment.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  tags         = merge(var.tags, { "tidelake:module" = "dagster" })
  region       = data.aws_region.current.region
  account_id   = data.aws_caller_identity.current.account_id
  partition    = data.aws_partition.current.partition
  account_root = "arn:${local.partition}:iam::${local.account_id}:root"
  short_name   = substr("${var.name}-dagster", 0, 32)
  log_group    = "/ecs/${var.name}/dagster"
  run_family   = "${var.name}-dagster-run"
  workspace    = "/opt/tidelake/workspace.yaml"
  dagster_home = "/opt/dagster/home"
  db_name      = "dagster"
  db_username  = "dagster"

  # Everything Tidelake and deploy/dagster.yaml read, for all four task definitions. The
  # ingestion model comes last: extra_env must not make the sensors and the worker disagree.
  common_env = merge(var.kafka_env, {
    TIDELAKE_ENV               = var.tidelake_env
    TIDELAKE_CONSUMER_GROUP    = var.consumer_group
    LAKE_URI                   = var.lake_uri
    AWS_REGION                 = local.region
    DAGSTER_HOME               = local.dagster_home
    DAGSTER_PG_HOST            = aws_db_instance.this.address
    DAGSTER_PG_USER            = local.db_username
    DAGSTER_PG_DB              = local.db_name
    DAGSTER_COMPUTE_LOG_BUCKET = var.compute_log_bucket
    DAGSTER_COMPUTE_LOG_PREFIX = var.compute_log_prefix
  }, var.extra_env, { TIDELAKE_INGEST_MODEL = var.ingest_model })

  # The worker drains Kafka only in the worker model; with runs or tick the sensors launch runs.
  worker_count = var.ingest_model == "worker" ? 1 : 0

  # The webserver and the daemon launch runs: they need the run task definition's family.
  launcher_env = merge(local.common_env, { DAGSTER_RUN_TASK_DEFINITION = local.run_family })

  secrets = concat(
    [{ name = "DAGSTER_PG_PASSWORD", valueFrom = aws_secretsmanager_secret.db.arn }],
    var.kafka_secret_arn == null ? [] : [
      { name = "KAFKA_SASL_USERNAME", valueFrom = "${var.kafka_secret_arn}:username::" },
      { name = "KAFKA_SASL_PASSWORD", valueFrom = "${var.kafka_secret_arn}:password::" },
    ],
    var.alert_webhook_secret_arn == null ? [] : [
      { name = "TIDELAKE_ALERT_WEBHOOK_URL", valueFrom = var.alert_webhook_secret_arn },
    ],
  )
  secret_arns  = compact([aws_secretsmanager_secret.db.arn, var.kafka_secret_arn, var.alert_webhook_secret_arn])
  kms_key_arns = compact([aws_kms_key.this.arn, var.kafka_secret_kms_key_arn])

  # Root filesystem read-only; /tmp is a per-task scratch volume (compute-log staging, spills).
  container_base = {
    image                  = var.image
    essential              = true
    readonlyRootFilesystem = true
    user                   = "10001:10001"
    secrets                = local.secrets
    mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
    linuxParameters        = { initProcessEnabled = true }
  }
}

# --- encryption and logs ------------------------------------------------------------------------

resource "aws_kms_key" "this" {
  description             = "${var.name}: Dagster database, secrets and logs"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdmin"
        Effect    = "Allow"
        Principal = { AWS = local.account_root }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogs"
        Effect    = "Allow"
        Principal = { Service = "logs.${local.region}.amazonaws.com" }
        Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
        Condition = {
          ArnLike = {
            "kms:EncryptionContext:aws:logs:arn" = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"
          }
        }
      },
    ]
  })
  tags = local.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}-dagster"
  target_key_id = aws_kms_key.this.key_id
}

resource "aws_cloudwatch_log_group" "dagster" {
  name              = local.log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = local.tags
}

# --- ECS cluster --------------------------------------------------------------------------------

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = local.tags
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = ["FARGATE", "FARGATE_SPOT"]

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }
}

# --- security groups ----------------------------------------------------------------------------

resource "aws_security_group" "alb" {
  name_prefix = "${var.name}-dagster-alb-"
  description = "Dagster webserver load balancer: HTTPS from the allowed CIDR blocks"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-dagster-alb" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  for_each = toset(var.allowed_cidrs)

  security_group_id = aws_security_group.alb.id
  description       = "HTTPS to the Dagster UI from an allowed network"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "alb_http" {
  for_each = toset(var.allowed_cidrs)

  security_group_id = aws_security_group.alb.id
  description       = "HTTP from an allowed network, redirected to HTTPS"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "alb_to_webserver" {
  security_group_id            = aws_security_group.alb.id
  description                  = "To the webserver tasks"
  ip_protocol                  = "tcp"
  from_port                    = 3000
  to_port                      = 3000
  referenced_security_group_id = aws_security_group.webserver.id
}

# Only the webserver tasks: lets the load balancer in.
resource "aws_security_group" "webserver" {
  name_prefix = "${var.name}-dagster-web-"
  description = "Dagster webserver tasks: port 3000 from the load balancer"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-dagster-webserver" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "webserver_from_alb" {
  security_group_id            = aws_security_group.webserver.id
  description                  = "From the Dagster load balancer"
  ip_protocol                  = "tcp"
  from_port                    = 3000
  to_port                      = 3000
  referenced_security_group_id = aws_security_group.alb.id
}

# Every Dagster task (webserver, daemon, runs): what it may reach.
resource "aws_security_group" "tasks" {
  name_prefix = "${var.name}-dagster-tasks-"
  description = "Dagster tasks: HTTPS to AWS APIs, Postgres, Kafka"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-dagster-tasks" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS: S3, ECR, ECS, Secrets Manager, CloudWatch, STS"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "tasks_postgres" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Dagster's Postgres"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.db.id
}

resource "aws_vpc_security_group_egress_rule" "tasks_kafka" {
  for_each = var.kafka_egress_port == null ? toset([]) : toset(var.kafka_egress_cidrs)

  security_group_id = aws_security_group.tasks.id
  description       = "Kafka brokers"
  ip_protocol       = "tcp"
  from_port         = var.kafka_egress_port
  to_port           = var.kafka_egress_port
  cidr_ipv4         = each.value
}

resource "aws_security_group" "db" {
  name_prefix = "${var.name}-dagster-db-"
  description = "Dagster Postgres: 5432 from Dagster tasks only"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-dagster-db" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "db_from_tasks" {
  security_group_id            = aws_security_group.db.id
  description                  = "Postgres from Dagster tasks"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.tasks.id
}

# --- Postgres -----------------------------------------------------------------------------------

# Letters and digits only: the password ends up in a connection URL.
resource "random_password" "db" {
  length  = 40
  special = false
}

resource "aws_secretsmanager_secret" "db" {
  #checkov:skip=CKV2_AWS_57:ECS injects the password at task start; a rotation Lambda would break running tasks until they restart. Rotate with terraform (taint random_password.db) + redeploy; see docs/DEPLOY.md.
  name_prefix             = "${var.name}/dagster/postgres-password-"
  description             = "Password of Dagster's Postgres user (DAGSTER_PG_PASSWORD)"
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = var.secret_recovery_window_days
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "db" {
  secret_id     = aws_secretsmanager_secret.db.id
  secret_string = random_password.db.result
}

resource "aws_db_subnet_group" "this" {
  name_prefix = "${var.name}-dagster-"
  description = "Dagster Postgres of ${var.name}"
  subnet_ids  = var.database_subnet_ids
  tags        = local.tags
}

resource "aws_db_parameter_group" "this" {
  name_prefix = "${var.name}-dagster-"
  description = "Dagster Postgres of ${var.name}: TLS only, slow and DDL statements logged"
  family      = "postgres${split(".", var.db_engine_version)[0]}"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }

  tags = local.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_iam_role" "rds_monitoring" {
  name_prefix = "${var.name}-rds-mon-"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "monitoring.rds.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = local.tags
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  role       = aws_iam_role.rds_monitoring.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

# Created up front so RDS's exported logs are encrypted and expire like the others.
resource "aws_cloudwatch_log_group" "db" {
  for_each = toset(["postgresql", "upgrade"])

  name              = "/aws/rds/instance/${var.name}-dagster/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = local.tags
}

resource "aws_db_instance" "this" {
  #checkov:skip=CKV_AWS_157:Multi-AZ is var.db_multi_az: true in prod, false in dev to halve the cost; tests/unit/test_terraform.py asserts prod sets it.
  #checkov:skip=CKV_AWS_293:Deletion protection is var.deletion_protection: true in prod, false in dev so it can be torn down; tests assert prod sets it.
  identifier     = "${var.name}-dagster"
  engine         = "postgres"
  engine_version = var.db_engine_version
  instance_class = var.db_instance_class

  db_name  = local.db_name
  username = local.db_username
  password = random_password.db.result
  port     = 5432

  allocated_storage     = var.db_allocated_storage_gib
  max_allocated_storage = var.db_allocated_storage_gib * 5
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.this.arn

  db_subnet_group_name                = aws_db_subnet_group.this.name
  vpc_security_group_ids              = [aws_security_group.db.id]
  parameter_group_name                = aws_db_parameter_group.this.name
  publicly_accessible                 = false
  multi_az                            = var.db_multi_az
  iam_database_authentication_enabled = true

  backup_retention_period   = var.db_backup_retention_days
  copy_tags_to_snapshot     = true
  deletion_protection       = var.deletion_protection
  skip_final_snapshot       = !var.deletion_protection
  final_snapshot_identifier = "${var.name}-dagster-final"

  auto_minor_version_upgrade      = true
  enabled_cloudwatch_logs_exports = ["postgresql", "upgrade"]
  monitoring_interval             = 60
  monitoring_role_arn             = aws_iam_role.rds_monitoring.arn
  performance_insights_enabled    = true
  performance_insights_kms_key_id = aws_kms_key.this.arn

  tags = local.tags

  depends_on = [aws_cloudwatch_log_group.db]
}

# --- IAM ----------------------------------------------------------------------------------------

locals {
  ecs_tasks_trust = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ecs-tasks.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    }]
  })
}

# ECS itself: pull the image, write logs, resolve the secrets into environment variables.
resource "aws_iam_role" "execution" {
  name_prefix        = "${var.name}-dagster-exec-"
  assume_role_policy = local.ecs_tasks_trust
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

resource "aws_iam_role_policy" "execution_secrets" {
  name = "read-task-secrets"
  role = aws_iam_role.execution.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ReadSecrets"
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = local.secret_arns
      },
      {
        Sid      = "DecryptSecrets"
        Effect   = "Allow"
        Action   = ["kms:Decrypt"]
        Resource = local.kms_key_arns
      },
    ]
  })
}

# The webserver and the daemon: launch, watch and stop run tasks (the EcsRunLauncher).
resource "aws_iam_role" "launcher" {
  name_prefix        = "${var.name}-dagster-launch-"
  assume_role_policy = local.ecs_tasks_trust
  tags               = local.tags
}

resource "aws_iam_role_policy" "launcher" {
  name = "ecs-run-launcher"
  role = aws_iam_role.launcher.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "RunRunTasks"
        Effect   = "Allow"
        Action   = ["ecs:RunTask"]
        Resource = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:task-definition/${local.run_family}:*"
        Condition = {
          ArnEquals = { "ecs:cluster" = aws_ecs_cluster.this.arn }
        }
      },
      {
        Sid      = "WatchRunTasks"
        Effect   = "Allow"
        Action   = ["ecs:DescribeTasks", "ecs:StopTask"]
        Resource = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:task/${aws_ecs_cluster.this.name}/*"
      },
      {
        Sid      = "TagRunTasks"
        Effect   = "Allow"
        Action   = ["ecs:TagResource"]
        Resource = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:task/${aws_ecs_cluster.this.name}/*"
        Condition = {
          StringEquals = { "ecs:CreateAction" = "RunTask" }
        }
      },
      {
        # Neither action supports resource-level permissions.
        Sid      = "DescribeTaskDefinitionAndNetwork"
        Effect   = "Allow"
        Action   = ["ecs:DescribeTaskDefinition", "ec2:DescribeNetworkInterfaces"]
        Resource = "*"
      },
      {
        Sid      = "PassRunRoles"
        Effect   = "Allow"
        Action   = ["iam:PassRole"]
        Resource = [aws_iam_role.run.arn, aws_iam_role.execution.arn]
        Condition = {
          StringEquals = { "iam:PassedToService" = "ecs-tasks.amazonaws.com" }
        }
      },
      {
        Sid      = "ReadRunLogs"
        Effect   = "Allow"
        Action   = ["logs:GetLogEvents"]
        Resource = "${aws_cloudwatch_log_group.dagster.arn}:*"
      },
    ]
  })
}

resource "aws_iam_role_policy_attachment" "launcher" {
  for_each = toset(var.launcher_policy_arns)

  role       = aws_iam_role.launcher.name
  policy_arn = each.value
}

# Each run task and the ingestion worker: what the pipeline itself touches (lake, Kafka, compute
# logs). The worker launches no runs, so it needs none of the launcher's ECS permissions.
resource "aws_iam_role" "run" {
  name_prefix        = "${var.name}-dagster-run-"
  assume_role_policy = local.ecs_tasks_trust
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "run" {
  for_each = toset(var.run_policy_arns)

  role       = aws_iam_role.run.name
  policy_arn = each.value
}

# --- task definitions ---------------------------------------------------------------------------

resource "aws_ecs_task_definition" "webserver" {
  family                   = "${var.name}-dagster-webserver"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.webserver_cpu
  memory                   = var.webserver_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.launcher.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([merge(local.container_base, {
    name         = "webserver"
    command      = ["dagster-webserver", "-h", "0.0.0.0", "-p", "3000", "-w", local.workspace]
    portMappings = [{ containerPort = 3000, protocol = "tcp" }]
    environment  = [for k in sort(keys(local.launcher_env)) : { name = k, value = local.launcher_env[k] }]
    healthCheck = {
      command     = ["CMD", "python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/server_info', timeout=5)"]
      interval    = 30
      timeout     = 10
      retries     = 3
      startPeriod = 120
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = local.log_group
        awslogs-region        = local.region
        awslogs-stream-prefix = "webserver"
      }
    }
  })])

  tags = local.tags
}

resource "aws_ecs_task_definition" "daemon" {
  family                   = "${var.name}-dagster-daemon"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.daemon_cpu
  memory                   = var.daemon_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.launcher.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([merge(local.container_base, {
    name        = "daemon"
    command     = ["dagster-daemon", "run", "-w", local.workspace]
    environment = [for k in sort(keys(local.launcher_env)) : { name = k, value = local.launcher_env[k] }]
    healthCheck = {
      command     = ["CMD", "dagster-daemon", "liveness-check"]
      interval    = 60
      timeout     = 30
      retries     = 3
      startPeriod = 180
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = local.log_group
        awslogs-region        = local.region
        awslogs-stream-prefix = "daemon"
      }
    }
  })])

  tags = local.tags
}

# The ingestion worker: every topic drained continuously in one long-lived process, each batch
# recorded in Dagster's Postgres as runless events. On a stop ECS sends SIGTERM (through the init
# process) and the worker commits the batches in progress; stopTimeout bounds how long it may take.
resource "aws_ecs_task_definition" "worker" {
  family                   = "${var.name}-ingest-worker"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.worker_cpu
  memory                   = var.worker_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.run.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([merge(local.container_base, {
    name        = "worker"
    command     = ["tidelake", "ingest", "--follow"]
    stopTimeout = var.worker_stop_timeout_seconds
    environment = [for k in sort(keys(local.common_env)) : { name = k, value = local.common_env[k] }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = local.log_group
        awslogs-region        = local.region
        awslogs-stream-prefix = "worker"
      }
    }
  })])

  tags = local.tags
}

# The launcher overrides the command of the "run" container with `dagster api execute_run ...`.
resource "aws_ecs_task_definition" "run" {
  family                   = local.run_family
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.run_cpu
  memory                   = var.run_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.run.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  ephemeral_storage {
    size_in_gib = var.run_ephemeral_storage_gib
  }

  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([merge(local.container_base, {
    name        = "run"
    command     = ["dagster", "--version"]
    environment = [for k in sort(keys(local.common_env)) : { name = k, value = local.common_env[k] }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = local.log_group
        awslogs-region        = local.region
        awslogs-stream-prefix = "run"
      }
    }
  })])

  tags = local.tags
}

# --- services -----------------------------------------------------------------------------------

resource "aws_ecs_service" "webserver" {
  name                              = "dagster-webserver"
  cluster                           = aws_ecs_cluster.this.id
  task_definition                   = aws_ecs_task_definition.webserver.arn
  desired_count                     = 1
  launch_type                       = "FARGATE"
  platform_version                  = "LATEST"
  health_check_grace_period_seconds = 180
  enable_ecs_managed_tags           = true
  propagate_tags                    = "SERVICE"

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = concat([aws_security_group.tasks.id, aws_security_group.webserver.id], var.extra_security_group_ids)
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.webserver.arn
    container_name   = "webserver"
    container_port   = 3000
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  tags = local.tags

  depends_on = [aws_lb_listener.https]
}

# Exactly one daemon, ever: a deployment stops the old task before starting the new one.
resource "aws_ecs_service" "daemon" {
  name                               = "dagster-daemon"
  cluster                            = aws_ecs_cluster.this.id
  task_definition                    = aws_ecs_task_definition.daemon.arn
  desired_count                      = 1
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100
  enable_ecs_managed_tags            = true
  propagate_tags                     = "SERVICE"

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = concat([aws_security_group.tasks.id], var.extra_security_group_ids)
    assign_public_ip = false
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  tags = local.tags
}

# One worker for now (scaling by partitions is a later issue). Like the daemon, a deployment stops
# the old task before starting the new one: two workers would be safe (the Delta log arbitrates)
# but would only race each other for the same commits.
resource "aws_ecs_service" "worker" {
  name                               = "ingest-worker"
  cluster                            = aws_ecs_cluster.this.id
  task_definition                    = aws_ecs_task_definition.worker.arn
  desired_count                      = local.worker_count
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100
  enable_ecs_managed_tags            = true
  propagate_tags                     = "SERVICE"

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = concat([aws_security_group.tasks.id], var.extra_security_group_ids)
    assign_public_ip = false
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  tags = local.tags
}

# --- load balancer ------------------------------------------------------------------------------

resource "aws_lb" "webserver" {
  #checkov:skip=CKV_AWS_150:Deletion protection is var.deletion_protection: true in prod, false in dev; tests assert prod sets it.
  #checkov:skip=CKV2_AWS_28:Reachable only from var.allowed_cidrs (validated: never 0.0.0.0/0); attach a WAF ACL through var.web_acl_arn where policy requires one.
  #checkov:skip=CKV2_AWS_76:No web ACL is defined here (see CKV2_AWS_28); Dagster is Python, so the Log4j rule set would not apply anyway.
  name                       = local.short_name
  internal                   = var.internal_alb
  load_balancer_type         = "application"
  security_groups            = [aws_security_group.alb.id]
  subnets                    = var.public_subnet_ids
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection

  access_logs {
    bucket  = var.alb_log_bucket
    prefix  = var.alb_log_prefix
    enabled = true
  }

  tags = local.tags
}

resource "aws_lb_target_group" "webserver" {
  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer; the hop to the task stays inside private subnets and is limited to the load balancer's security group.
  name        = local.short_name
  port        = 3000
  protocol    = "HTTP"
  target_type = "ip"
  vpc_id      = var.vpc_id

  health_check {
    path                = "/server_info"
    matcher             = "200"
    interval            = 30
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = local.tags
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.webserver.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.webserver.arn
  }

  tags = local.tags
}

resource "aws_lb_listener" "http_redirect" {
  load_balancer_arn = aws_lb.webserver.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"

    redirect {
      port        = "443"
      protocol    = "HTTPS"
      status_code = "HTTP_301"
    }
  }

  tags = local.tags
}

resource "aws_wafv2_web_acl_association" "webserver" {
  count = var.web_acl_arn == null ? 0 : 1

  resource_arn = aws_lb.webserver.arn
  web_acl_arn  = var.web_acl_arn
}
