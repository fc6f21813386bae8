# prod: Kafka on Amazon MSK Serverless (IAM auth), a NAT gateway per zone, Multi-AZ Postgres,
# deletion protection on the database and the load balancers, and nothing force-destroyed.

locals {
  name         = "tidelake-prod"
  topic_prefix = "prod."
  tags = {
    project     = "tidelake"
    environment = "prod"
    managed-by  = "terraform"
  }
}

module "network" {
  source = "../../modules/network"

  name               = local.name
  vpc_cidr           = var.vpc_cidr
  availability_zones = var.availability_zones
  single_nat_gateway = false
}

module "logs" {
  source = "../../modules/logs"

  name           = local.name
  retention_days = 365
}

module "lake" {
  source = "../../modules/lake"

  name              = local.name
  bucket_name       = var.lake_bucket_name
  access_log_bucket = module.logs.bucket_id
  access_log_prefix = module.logs.s3_log_prefix
  force_destroy     = false
}

module "kafka" {
  source = "../../modules/kafka_msk"

  name                  = local.name
  vpc_id                = module.network.vpc_id
  subnet_ids            = module.network.private_subnet_ids
  topic_prefix          = local.topic_prefix
  consumer_group_prefix = "tidelake-prod"
}

module "dagster" {
  source = "../../modules/dagster"

  name                     = local.name
  vpc_id                   = module.network.vpc_id
  private_subnet_ids       = module.network.private_subnet_ids
  public_subnet_ids        = module.network.public_subnet_ids
  database_subnet_ids      = module.network.database_subnet_ids
  extra_security_group_ids = [module.kafka.client_security_group_id]
  allowed_cidrs            = var.dagster_allowed_cidrs
  certificate_arn          = var.certificate_arn
  alb_log_bucket           = module.logs.bucket_id
  alb_log_prefix           = module.logs.alb_log_prefix
  image                    = var.image

  lake_uri           = module.lake.lake_uri
  compute_log_bucket = module.lake.bucket_id
  compute_log_prefix = module.lake.compute_log_prefix
  # Runs and the ingestion worker ingest (consumer) and create missing topics with partitions and retention (admin).
  run_policy_arns = [
    module.lake.read_write_policy_arn,
    module.lake.compute_logs_policy_arn,
    module.kafka.consumer_policy_arn,
    module.kafka.admin_policy_arn,
  ]
  # Sensors read consumer lag and Delta txn versions.
  launcher_policy_arns = [
    module.lake.read_write_policy_arn,
    module.lake.compute_logs_policy_arn,
    module.kafka.consumer_policy_arn,
  ]

  # MSK Serverless: SASL/OAUTHBEARER with the task role's IAM identity; no password.
  kafka_env      = module.kafka.client_env
  consumer_group = "tidelake-prod-ingest"

  alert_webhook_secret_arn = var.alert_webhook_secret_arn

  db_instance_class        = "db.t4g.medium"
  db_multi_az              = true
  db_backup_retention_days = 14
  deletion_protection      = true
}

module "api" {
  source = "../../modules/api"

  name                     = local.name
  cluster_name             = module.dagster.cluster_name
  vpc_id                   = module.network.vpc_id
  private_subnet_ids       = module.network.private_subnet_ids
  public_subnet_ids        = module.network.public_subnet_ids
  extra_security_group_ids = [module.kafka.client_security_group_id]
  allowed_cidrs            = var.api_allowed_cidrs
  certificate_arn          = var.certificate_arn
  alb_log_bucket           = module.logs.bucket_id
  alb_log_prefix           = module.logs.alb_log_prefix
  web_acl_arn              = var.api_web_acl_arn
  image                    = var.image

  lake_uri         = module.lake.lake_uri
  task_policy_arns = [module.lake.read_only_policy_arn, module.kafka.producer_policy_arn]
  kafka_env        = module.kafka.client_env

  min_capacity        = 2
  max_capacity        = 10
  deletion_protection = true
}
