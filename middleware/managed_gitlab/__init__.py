"""The managed GitLab side: mirror projects and their variables, pipelines, the templates project."""
