output "dagster_url" {
  description = "The Dagster UI."
  value       = module.dagster.webserver_url
}

output "api_url" {
  description = "The HTTP API."
  value       = module.api.url
}

output "lake_uri" {
  description = "LAKE_URI of the environment."
  value       = module.lake.lake_uri
}

output "kafka_bootstrap_servers" {
  description = "KAFKA_BOOTSTRAP_SERVERS of the environment (MSK Serverless, SASL/IAM on 9098)."
  value       = module.kafka.bootstrap_servers
}

output "kafka_producer_policy_arn" {
  description = "IAM policy for other producers of the environment's topics."
  value       = module.kafka.producer_policy_arn
}

output "ecs_cluster_name" {
  description = "ECS cluster of the Dagster services, runs and the API."
  value       = module.dagster.cluster_name
}

output "analyst_policy_arn" {
  description = "IAM policy to attach to analysts' roles: read-only on silver and gold."
  value       = module.lake.read_only_policy_arn
}
