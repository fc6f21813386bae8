# dev: the whole platform at the smallest sensible size, Kafka on Confluent Cloud (Basic cluster,
# Datagen sample data), everything destroyable with `terraform destroy`.

locals {
  name         = "tidelake-dev"
  topic_prefix = "dev."
  tags = {
    project     = "tidelake"
    environment = "dev"
    managed-by  = "terraform"
  }
}

module "network" {
  source = "../../modules/network"

  name               = local.name
  vpc_cidr           = var.vpc_cidr
  availability_zones = var.availability_zones
  single_nat_gateway = true
}

module "logs" {
  source = "../../modules/logs"

  name           = local.name
  retention_days = 90
  force_destroy  = true
}

module "lake" {
  source = "../../modules/lake"

  name              = local.name
  access_log_bucket = module.logs.bucket_id
  access_log_prefix = module.logs.s3_log_prefix
  force_destroy     = true
}

module "kafka" {
  source = "../../modules/kafka_confluent"

  name                        = local.name
  cloud_region                = var.region
  cluster_type                = "basic"
  topic_prefix                = local.topic_prefix
  partitions                  = var.topic_partitions
  datagen_enabled             = var.datagen_enabled
  secret_recovery_window_days = 0
}

module "dagster" {
  source = "../../modules/dagster"

  name                = local.name
  vpc_id              = module.network.vpc_id
  private_subnet_ids  = module.network.private_subnet_ids
  public_subnet_ids   = module.network.public_subnet_ids
  database_subnet_ids = module.network.database_subnet_ids
  allowed_cidrs       = var.dagster_allowed_cidrs
  certificate_arn     = var.certificate_arn
  alb_log_bucket      = module.logs.bucket_id
  alb_log_prefix      = module.logs.alb_log_prefix
  image               = var.image

  lake_uri             = module.lake.lake_uri
  compute_log_bucket   = module.lake.bucket_id
  compute_log_prefix   = module.lake.compute_log_prefix
  run_policy_arns      = [module.lake.read_write_policy_arn, module.lake.compute_logs_policy_arn]
  launcher_policy_arns = [module.lake.read_write_policy_arn, module.lake.compute_logs_policy_arn]

  # Confluent Cloud: SASL/PLAIN with the ingest API key, over the internet on 9092.
  kafka_env                = module.kafka.client_env
  kafka_secret_arn         = module.kafka.ingest_secret_arn
  kafka_secret_kms_key_arn = module.kafka.secrets_kms_key_arn
  kafka_egress_port        = 9092
  kafka_egress_cidrs       = ["0.0.0.0/0"]
  consumer_group           = "tidelake-dev-ingest"

  webserver_cpu    = 512
  webserver_memory = 1024
  daemon_cpu       = 512
  daemon_memory    = 1024
  run_cpu          = 1024
  run_memory       = 4096
  # The always-on ingestion worker at dev volumes; at 4 GiB keep TIDELAKE_MAX_BATCH_BYTES at its
  # default or below (six topic threads, one batch budget each).
  worker_cpu    = 1024
  worker_memory = 4096

  db_instance_class           = "db.t4g.micro"
  db_multi_az                 = false
  db_backup_retention_days    = 1
  deletion_protection         = false
  secret_recovery_window_days = 0
  log_retention_days          = 365
}

module "api" {
  source = "../../modules/api"

  name               = local.name
  cluster_name       = module.dagster.cluster_name
  vpc_id             = module.network.vpc_id
  private_subnet_ids = module.network.private_subnet_ids
  public_subnet_ids  = module.network.public_subnet_ids
  allowed_cidrs      = var.api_allowed_cidrs
  certificate_arn    = var.certificate_arn
  alb_log_bucket     = module.logs.bucket_id
  alb_log_prefix     = module.logs.alb_log_prefix
  image              = var.image

  lake_uri         = module.lake.lake_uri
  task_policy_arns = [module.lake.read_only_policy_arn]

  kafka_env                = module.kafka.client_env
  kafka_secret_arn         = module.kafka.producer_secret_arn
  kafka_secret_kms_key_arn = module.kafka.secrets_kms_key_arn
  kafka_egress_port        = 9092
  kafka_egress_cidrs       = ["0.0.0.0/0"]

  min_capacity        = 1
  max_capacity        = 2
  deletion_protection = false
}
