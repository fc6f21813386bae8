# The HTTP API (FastAPI served by uvicorn, module tidelake.api:app) as an ECS Fargate service
# behind an HTTPS load balancer, scaled on CPU and on requests per task. It runs from the same
# image as Dagster and in the same cluster.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  tags       = merge(var.tags, { "tidelake:module" = "api" })
  region     = data.aws_region.current.region
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  short_name = substr("${var.name}-api", 0, 32)
  log_group  = "/ecs/${var.name}/api"

  env = merge(var.kafka_env, {
    TIDELAKE_ENV = var.tidelake_env
    LAKE_URI     = var.lake_uri
    AWS_REGION   = local.region
  }, var.extra_env)

  secrets = var.kafka_secret_arn == null ? [] : [
    { name = "KAFKA_SASL_USERNAME", valueFrom = "${var.kafka_secret_arn}:username::" },
    { name = "KAFKA_SASL_PASSWORD", valueFrom = "${var.kafka_secret_arn}:password::" },
  ]
}

resource "aws_kms_key" "logs" {
  description             = "${var.name}: API logs"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdmin"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
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
            "kms:EncryptionContext:aws:logs:arn" = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.log_group}"
          }
        }
      },
    ]
  })
  tags = local.tags
}

resource "aws_cloudwatch_log_group" "api" {
  name              = local.log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.logs.arn
  tags              = local.tags
}

# --- security groups ----------------------------------------------------------------------------

resource "aws_security_group" "alb" {
  name_prefix = "${var.name}-api-alb-"
  description = "API load balancer: HTTPS from the allowed CIDR blocks"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-api-alb" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  for_each = toset(var.allowed_cidrs)

  security_group_id = aws_security_group.alb.id
  description       = "HTTPS to the API"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "alb_to_tasks" {
  security_group_id            = aws_security_group.alb.id
  description                  = "To the API tasks"
  ip_protocol                  = "tcp"
  from_port                    = var.container_port
  to_port                      = var.container_port
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_security_group" "tasks" {
  name_prefix = "${var.name}-api-tasks-"
  description = "API tasks: from the load balancer; HTTPS to AWS APIs and Kafka out"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-api-tasks" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_alb" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "From the API load balancer"
  ip_protocol                  = "tcp"
  from_port                    = var.container_port
  to_port                      = var.container_port
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS: S3, ECR, Secrets Manager, CloudWatch, STS"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
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

resource "aws_iam_role" "execution" {
  name_prefix        = "${var.name}-api-exec-"
  assume_role_policy = local.ecs_tasks_trust
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

resource "aws_iam_role_policy" "execution_secrets" {
  count = var.kafka_secret_arn == null ? 0 : 1

  name = "read-task-secrets"
  role = aws_iam_role.execution.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ReadSecrets"
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = [var.kafka_secret_arn]
      },
      {
        Sid      = "DecryptSecrets"
        Effect   = "Allow"
        Action   = ["kms:Decrypt"]
        Resource = compact([var.kafka_secret_kms_key_arn])
      },
    ]
  })
}

resource "aws_iam_role" "task" {
  name_prefix        = "${var.name}-api-task-"
  assume_role_policy = local.ecs_tasks_trust
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "task" {
  for_each = toset(var.task_policy_arns)

  role       = aws_iam_role.task.name
  policy_arn = each.value
}

# --- task definition and service ----------------------------------------------------------------

resource "aws_ecs_task_definition" "api" {
  family                   = "${var.name}-api"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([{
    name                   = "api"
    image                  = var.image
    essential              = true
    command                = var.command
    readonlyRootFilesystem = true
    user                   = "10001:10001"
    portMappings           = [{ containerPort = var.container_port, protocol = "tcp" }]
    environment            = [for k in sort(keys(local.env)) : { name = k, value = local.env[k] }]
    secrets                = local.secrets
    mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
    linuxParameters        = { initProcessEnabled = true }
    healthCheck = {
      command     = ["CMD", "python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${var.container_port}${var.health_check_path}', timeout=5)"]
      interval    = 30
      timeout     = 10
      retries     = 3
      startPeriod = 60
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = local.log_group
        awslogs-region        = local.region
        awslogs-stream-prefix = "api"
      }
    }
  }])

  tags = local.tags
}

resource "aws_ecs_service" "api" {
  name                              = "api"
  cluster                           = var.cluster_name
  task_definition                   = aws_ecs_task_definition.api.arn
  desired_count                     = var.min_capacity
  launch_type                       = "FARGATE"
  platform_version                  = "LATEST"
  health_check_grace_period_seconds = 60
  enable_ecs_managed_tags           = true
  propagate_tags                    = "SERVICE"

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = concat([aws_security_group.tasks.id], var.extra_security_group_ids)
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.api.arn
    container_name   = "api"
    container_port   = var.container_port
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  tags = local.tags

  # Auto scaling owns the task count once the service exists.
  lifecycle {
    ignore_changes = [desired_count]
  }

  depends_on = [aws_lb_listener.https]
}

# --- auto scaling -------------------------------------------------------------------------------

resource "aws_appautoscaling_target" "api" {
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${var.cluster_name}/${aws_ecs_service.api.name}"
  min_capacity       = var.min_capacity
  max_capacity       = var.max_capacity
  tags               = local.tags
}

resource "aws_appautoscaling_policy" "cpu" {
  name               = "${var.name}-api-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.api.service_namespace
  scalable_dimension = aws_appautoscaling_target.api.scalable_dimension
  resource_id        = aws_appautoscaling_target.api.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.cpu_target_percent
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

resource "aws_appautoscaling_policy" "requests" {
  name               = "${var.name}-api-requests"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.api.service_namespace
  scalable_dimension = aws_appautoscaling_target.api.scalable_dimension
  resource_id        = aws_appautoscaling_target.api.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.requests_per_target
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    predefined_metric_specification {
      predefined_metric_type = "ALBRequestCountPerTarget"
      resource_label         = "${aws_lb.api.arn_suffix}/${aws_lb_target_group.api.arn_suffix}"
    }
  }
}

# --- load balancer ------------------------------------------------------------------------------

resource "aws_lb" "api" {
  #checkov:skip=CKV_AWS_150:Deletion protection is var.deletion_protection: true in prod, false in dev; tests assert prod sets it.
  #checkov:skip=CKV2_AWS_28:WAF is opt-in through var.web_acl_arn (a web ACL's rules are an account-level decision); the listener is HTTPS-only.
  #checkov:skip=CKV2_AWS_76:No web ACL is defined here (see CKV2_AWS_28); the service is Python, so the Log4j rule set would not apply anyway.
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

resource "aws_lb_target_group" "api" {
  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer; the hop to the task stays inside private subnets and is limited to the load balancer's security group.
  name        = local.short_name
  port        = var.container_port
  protocol    = "HTTP"
  target_type = "ip"
  vpc_id      = var.vpc_id

  deregistration_delay = 30

  health_check {
    path                = var.health_check_path
    matcher             = "200"
    interval            = 15
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = local.tags
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.api.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.api.arn
  }

  tags = local.tags
}

resource "aws_wafv2_web_acl_association" "api" {
  count = var.web_acl_arn == null ? 0 : 1

  resource_arn = aws_lb.api.arn
  web_acl_arn  = var.web_acl_arn
}
