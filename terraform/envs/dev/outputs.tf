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
  description = "KAFKA_BOOTSTRAP_SERVERS of the environment."
  value       = module.kafka.bootstrap_servers
}

output "kafka_producer_secret_arn" {
  description = "Secrets Manager secret with the producer API key (for `tidelake simulate` from a workstation)."
  value       = module.kafka.producer_secret_arn
}

output "ecs_cluster_name" {
  description = "ECS cluster of the Dagster services, runs and the API."
  value       = module.dagster.cluster_name
}

output "analyst_policy_arn" {
  description = "IAM policy to attach to analysts' roles: read-only on silver and gold."
  value       = module.lake.read_only_policy_arn
}
